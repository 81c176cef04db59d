//! Tables as the LINSTOR client prints them (plain ASCII, so they survive any terminal and log).

/// Renders `rows` under `header`; columns whose header is in `right` are right-aligned.
pub fn render(header: &[&str], rows: &[Vec<String>], right: &[&str]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |fill: char| {
        let parts: Vec<String> = widths.iter().map(|w| fill.to_string().repeat(w + 2)).collect();
        format!("+{}+\n", parts.join("+"))
    };
    let cells = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let w = widths[i];
                if right.contains(&header[i]) {
                    format!(" {c:>w$} ")
                } else {
                    format!(" {c:<w$} ")
                }
            })
            .collect();
        format!("|{}|\n", parts.join("|"))
    };
    let mut out = line('-');
    out.push_str(&cells(header.to_vec()));
    out.push_str(&line('='));
    for r in rows {
        out.push_str(&cells(r.iter().map(String::as_str).collect()));
    }
    out.push_str(&line('-'));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_columns() {
        let t = render(
            &["Node", "State"],
            &[vec!["n1".into(), "Online".into()]],
            &["State"],
        );
        assert_eq!(
            t,
            "+------+--------+\n| Node |  State |\n+======+========+\n| n1   | Online |\n+------+--------+\n"
        );
    }
}
