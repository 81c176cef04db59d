//! `replbd-fuzz-smoke`: runs every fuzz target's check on stable Rust — each committed seed input,
//! then seeded mutations of them (bit flips, interesting values, inserted, deleted and duplicated
//! ranges, truncation, splices of two seeds) for a time budget per target. Not coverage-guided like
//! libFuzzer (`fuzz/`), but it needs no nightly toolchain, so CI runs it on every change.
//!
//! ```text
//! replbd-fuzz-smoke [--seconds-per-target N] [--seed S] [--target NAME]
//! ```
//!
//! A failed check is written to `<temp>/replbd-fuzz-crashes/<target>/crash-<hash>` (replay it with
//! `cargo +nightly fuzz run <target> <file>`, or with `--seed` here), reported with its seed and
//! first bytes, and makes the exit status 1. The last line is
//! `replbd-fuzz-smoke: targets=T inputs=N crashes=C`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use replbd_fuzz_checks::{TARGETS, Target, nbd_parser};

/// A small, fast PRNG (xorshift64*): the runs must replay from a seed, nothing more.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    4096,
    1 << 20,
    u64::MAX,
];

/// One to four random edits of `input`, sometimes spliced with `other`.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = INTERESTING[rng.below(5) + 1] as u8;
            }
            2 if len > 0 => {
                // A 2-, 4- or 8-byte interesting value, either endianness.
                let width = [2, 4, 8][rng.below(3)].min(len);
                let i = rng.below(len - width + 1);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                out[i..i + width].copy_from_slice(&bytes[..width]);
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let fill: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                out.splice(i..i, fill);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                out.drain(i..i + n);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let copy = out[i..i + n].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, copy);
            }
            6 if len > 0 => out.truncate(rng.below(len)),
            _ if !other.is_empty() => {
                let cut = rng.below(out.len() + 1);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ => out.push(rng.next() as u8),
        }
    }
    out.truncate(1 << 16);
    out
}

/// The committed seeds of `target` (`seeds/<name>.hex`, one input per line) and built-in ones.
fn seeds(target: &Target) -> Result<Vec<Vec<u8>>, String> {
    let mut seeds = vec![Vec::new()];
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(format!("{}.hex", target.name));
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            seeds.push(hex(line).ok_or_else(|| format!("{}:{}: not hex", path.display(), n + 1))?);
        }
    }
    if target.name == "nbd_parser" {
        // A whole session (selector 1) and straight into transmission (selector 3).
        let mut session = vec![1];
        session.extend(nbd_parser::handshake_prefix());
        seeds.push(session);
        seeds.push(vec![3, 0x25, 0x60, 0x95, 0x13, 0, 0, 0, 0]);
    }
    Ok(seeds)
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The panic message of a failed check.
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Writes a failing input where it can be replayed from; returns the path.
fn save(target: &str, input: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join("replbd-fuzz-crashes").join(target);
    let path = dir.join(format!("crash-{:08x}", crc(input)));
    if std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, input))
        .is_err()
    {
        return PathBuf::from("(could not be written)");
    }
    path
}

/// FNV-1a, for naming crash files.
fn crc(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

struct Options {
    seconds: u64,
    seed: u64,
    only: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        seconds: 10,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |what: &str| args.next().ok_or_else(|| format!("{a} needs {what}"));
        match a.as_str() {
            "--seconds-per-target" => {
                opts.seconds = value("a number of seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds-per-target: {e}"))?;
            }
            "--seed" => {
                opts.seed = value("a number")?
                    .parse::<u64>()
                    .map_err(|e| format!("--seed: {e}"))?
                    .max(1);
            }
            "--target" => {
                let name = value("a target name")?;
                if !TARGETS.iter().any(|t| t.name == name) {
                    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
                    return Err(format!(
                        "no target {name:?}; the targets are {}",
                        names.join(", ")
                    ));
                }
                opts.only = Some(name);
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: replbd-fuzz-smoke [--seconds-per-target N] [--seed S] [--target NAME]"
                ));
            }
        }
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let mut out = std::io::stdout().lock();
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "replbd-fuzz-smoke: {e}");
            return ExitCode::from(2);
        }
    };
    // The runner reports failed checks itself, once each, with the input.
    std::panic::set_hook(Box::new(|_| {}));
    let _ = writeln!(
        out,
        "replbd-fuzz-smoke: seed={} seconds-per-target={} (replay: --seed {})",
        opts.seed, opts.seconds, opts.seed
    );
    let (mut total_inputs, mut total_crashes, mut targets) = (0u64, 0u64, 0);
    for target in TARGETS
        .iter()
        .filter(|t| opts.only.as_deref().is_none_or(|o| o == t.name))
    {
        targets += 1;
        let seeds = match seeds(target) {
            Ok(s) => s,
            Err(e) => {
                let _ = writeln!(
                    out,
                    "replbd-fuzz-smoke: {}: cannot read the seeds: {e}",
                    target.name
                );
                return ExitCode::FAILURE;
            }
        };
        let mut rng = Rng(opts.seed ^ crc(target.name.as_bytes()) as u64 | 1);
        let deadline = Instant::now() + Duration::from_secs(opts.seconds);
        let (mut inputs, mut crashes) = (0u64, 0u64);
        let mut run = |input: &[u8]| -> bool {
            inputs += 1;
            match std::panic::catch_unwind(|| (target.check)(input)) {
                Ok(()) => true,
                Err(payload) => {
                    crashes += 1;
                    let path = save(target.name, input);
                    let head: String = input.iter().take(32).map(|b| format!("{b:02x}")).collect();
                    let _ = writeln!(
                        out,
                        "replbd-fuzz-smoke: CRASH in {} (seed {}): {}\n  input: {} bytes, first: {head}\n  saved: {}",
                        target.name,
                        opts.seed,
                        message(payload.as_ref()),
                        input.len(),
                        path.display()
                    );
                    false
                }
            }
        };
        let mut clean = seeds.iter().all(|s| run(s));
        while clean && Instant::now() < deadline {
            let a = &seeds[rng.below(seeds.len())];
            let b = &seeds[rng.below(seeds.len())];
            let input = mutate(&mut rng, a, b);
            clean = run(&input);
        }
        let _ = writeln!(
            out,
            "replbd-fuzz-smoke: {} seeds={} inputs={inputs} crashes={crashes}",
            target.name,
            seeds.len()
        );
        total_inputs += inputs;
        total_crashes += crashes;
    }
    let _ = writeln!(
        out,
        "replbd-fuzz-smoke: targets={targets} inputs={total_inputs} crashes={total_crashes}"
    );
    if total_crashes == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
