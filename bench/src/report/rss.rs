//! The memory part of `docs/benchmarks.md`: resident memory of `replbd-node` per idle resource and
//! per TiB of bitmap, from the `KEY VALUE` lines `bench/node-rss/run` prints.

use std::collections::BTreeMap;
use std::fmt::Write;

/// The section's markdown.
pub fn section(values: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write_section(values, &mut s);
    s
}

fn write_section(v: &BTreeMap<String, String>, s: &mut String) -> std::fmt::Result {
    let get = |k: &str| v.get(k).map_or("?", String::as_str);
    let many = v
        .keys()
        .find_map(|k| k.strip_prefix("rss_kib_")?.strip_suffix("_resources"))
        .unwrap_or("?");
    writeln!(s, "## Memory of replbd-node\n")?;
    writeln!(
        s,
        "Resident memory (VmRSS) of one `replbd-node` daemon on the host, 5 s after it brought its \
         resources up; every resource has a peer that never answers, as an idle resource whose \
         peer is away, and no front end.\n"
    )?;
    writeln!(s, "```sh\nbench/node-rss/run {many}\n```\n")?;
    writeln!(s, "| what | KiB |\n|---|---:|")?;
    writeln!(s, "| 1 resource (64 MiB disk) | {} |", get("rss_kib_1_resource"))?;
    writeln!(
        s,
        "| {many} resources | {} |",
        get(&format!("rss_kib_{many}_resources"))
    )?;
    writeln!(
        s,
        "| **per idle resource** | **{}** |",
        get("rss_kib_per_idle_resource")
    )?;
    writeln!(
        s,
        "| 1 resource with a 1 TiB disk | {} |",
        get("rss_kib_1_resource_1tib")
    )?;
    writeln!(
        s,
        "| **per TiB of bitmap (clean)** | **{}** |",
        get("rss_kib_per_tib_bitmap")
    )?;
    writeln!(
        s,
        "\nThe TiB figure is for a clean bitmap (one peer slot, 4 KiB per bit): what a fully dirty \
         one costs is not measured here.\n"
    )
}
