//! `replbd demo`: the whole system on one machine, in under a minute.
//!
//! It starts a controller and three node daemons as real processes on loopback (each node on
//! its own 127.x.y.z address, like three hosts), creates file storage pools in a temporary
//! directory, places a 3-replica resource, writes data through the volume's front end and reads
//! it back, stops a node, writes more, restarts the node and shows it resync to UpToDate, then
//! checks the resynced node holds every byte. Every step runs the real `replbd` command and
//! shows it. It cleans up after itself (unless `--keep`) and ends with `demo: ok`.
//!
//! The data path: where the kernel has ublk, the Primary serves the volume as `/dev/ublkbN` (N is
//! the volume's minor), written and read back with `O_DIRECT`; elsewhere over NBD (a unix socket
//! per resource), written with `qemu-io` (see [`data`]).

pub mod cluster;
mod data;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster::Cluster;

use crate::cli::args::{Cli, DemoArgs};
use crate::cli::{Failure, out};

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let size = crate::model::size::parse(&args.size).map_err(Failure::new)?;
    crate::model::size::check_volume(size).map_err(Failure::new)?;
    if size < 16 << 20 {
        return Err(Failure::new(
            "the demo writes 8 MiB: give --size of at least 16MiB",
        ));
    }
    let bins = binaries()?;
    // The node agents decide the front end (ublk where they may use it); without ublk in the
    // kernel it is NBD for certain, and qemu-io is needed before anything starts.
    if !Path::new("/dev/ublk-control").exists() && which("qemu-io").is_none() {
        return Err(Failure::new(
            "qemu-io is not installed: without ublk in the kernel (/dev/ublk-control is missing) the demo writes through the NBD front end with it (install qemu-utils, e.g. scripts/install-deps.sh)",
        ));
    }
    let (dir, temp) = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| Failure::new(format!("cannot create {}: {e}", d.display())))?;
            (d.clone(), false)
        }
        None => (make_temp_dir()?, true),
    };
    say(&format!("demo: working in {}", dir.display()));
    let mut cluster = Cluster::start(&bins, &dir).await?;
    let result = steps(&mut cluster, &args.size).await;
    match (&result, args.keep) {
        (Ok(()), true) => {
            cluster.detach();
            say(&format!(
                "\ndemo: the cluster keeps running (--keep). Use it with:\n  export REPLBD_CONTROLLERS={}\n  {} resource list\n  {} node list\n  {} resource primary {} demo\n  {}\nStop it with:\n  kill {}\n  rm -rf {}",
                cluster.controller_addr,
                bins.replbd.display(),
                bins.replbd.display(),
                bins.replbd.display(),
                cluster.device_hint.0,
                read_hint(&cluster.device_hint.1),
                cluster
                    .pids()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                dir.display()
            ));
        }
        _ => {
            cluster.stop_all().await;
            if temp && result.is_ok() {
                let _ = std::fs::remove_dir_all(&dir);
            } else if result.is_err() {
                say(&format!("demo: logs kept in {}", dir.display()));
            }
        }
    }
    result?;
    say(&format!(
        "demo: finished in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    out("demo: ok");
    Ok(())
}

/// The binaries the demo runs.
pub struct Binaries {
    /// `replbd` (this program).
    pub replbd: PathBuf,
    /// `replbd-controller`.
    pub controller: PathBuf,
    /// `replbd-node`.
    pub node: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn binaries() -> Result<Binaries, Failure> {
    let me = std::env::current_exe().map_err(|e| Failure::new(format!("cannot find this program: {e}")))?;
    let dir = me.parent().map(Path::to_path_buf).unwrap_or_default();
    let find = |name: &str| {
        let beside = dir.join(name);
        if beside.is_file() {
            return Ok(beside);
        }
        which(name).ok_or_else(|| {
            Failure::new(format!(
                "{name} is not beside {} nor on PATH: build it (cargo build --release -p replbd-ctl -p replbd-node) or run scripts/demo.sh",
                me.display()
            ))
        })
    };
    Ok(Binaries {
        replbd: me.clone(),
        controller: find("replbd-controller")?,
        node: find("replbd-node")?,
    })
}

fn make_temp_dir() -> Result<PathBuf, Failure> {
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let d = base.join(format!("replbd-demo.{}.{i}", std::process::id()));
        if std::fs::create_dir(&d).is_ok() {
            return Ok(d);
        }
    }
    Err(Failure::new(format!(
        "cannot create a directory in {}",
        base.display()
    )))
}

/// Prints a demo line.
fn say(text: &str) {
    out(text);
}

/// Runs `replbd ARGS` against the demo controller, showing the command and its output.
async fn replbd(cluster: &Cluster, args: &[&str]) -> Result<(), Failure> {
    say(&format!("\n$ replbd {}", args.join(" ")));
    let mut argv = vec!["replbd", "--controllers", cluster.controller_addr.as_str()];
    argv.extend_from_slice(args);
    let cli = <Cli as clap::Parser>::try_parse_from(&argv).map_err(|e| Failure::new(e.to_string()))?;
    crate::cli::run(cli).await
}

/// A command that reads the start of the device.
fn read_hint(device: &str) -> String {
    if device.starts_with("/dev/") {
        format!("dd if={device} bs=512 count=1 iflag=direct | od -A d -t x1 | head")
    } else {
        format!("qemu-io -f raw -c 'read -v 0 512' '{device}'")
    }
}

/// The demo writes two patterns of this many bytes.
const MIB4: u64 = 4 << 20;

async fn steps(c: &mut Cluster, size_text: &str) -> Result<(), Failure> {
    for (name, addr) in c.node_addrs() {
        replbd(c, &["node", "create", &name, &addr]).await?;
    }
    c.wait_nodes_online(Duration::from_secs(30)).await?;
    replbd(c, &["node", "list"]).await?;
    for (name, _) in c.node_addrs() {
        let pool = c.dir.join(format!("pool-{name}"));
        replbd(
            c,
            &[
                "storage-pool",
                "create",
                "file",
                &name,
                "pool1",
                &pool.display().to_string(),
            ],
        )
        .await?;
    }
    replbd(c, &["storage-pool", "list"]).await?;
    replbd(c, &["resource-definition", "create", "demo"]).await?;
    replbd(c, &["volume-definition", "create", "demo", size_text]).await?;
    replbd(c, &["resource", "create", "demo", "--auto-place", "3"]).await?;
    replbd(c, &["resource", "wait-sync", "demo", "--timeout", "60"]).await?;
    replbd(c, &["resource", "list"]).await?;

    replbd(c, &["resource", "primary", "n1", "demo"]).await?;
    let dev1 = c.device_of("demo", "n1").await?;
    c.device_hint = ("n1".to_owned(), dev1.clone());
    if dev1.starts_with("/dev/") {
        say(&format!(
            "\ndemo: the nodes may use ublk: the Primary serves the volume as {dev1} (the volume's minor), written with O_DIRECT"
        ));
    } else if Path::new("/dev/ublk-control").exists() {
        say(
            "\ndemo: the kernel has ublk, but the nodes may not add devices (that needs root, CAP_SYS_ADMIN): writing through the NBD front end with qemu-io",
        );
    } else {
        say(
            "\ndemo: this kernel has no ublk (/dev/ublk-control is missing): writing through the NBD front end with qemu-io",
        );
    }
    replbd(c, &["volume", "list"]).await?;
    data::write_pattern(&dev1, 0xab, 0, MIB4)?;
    data::check_pattern(&dev1, 0xab, 0, MIB4)?;

    say("\ndemo: stopping node n3 (SIGTERM)");
    c.stop_node("n3").await?;
    c.wait_state("demo", "n3", "Unknown", Duration::from_secs(30))
        .await?;
    c.wait_conns("demo", "n1", "n3", Duration::from_secs(30)).await?;
    replbd(c, &["resource", "list"]).await?;
    data::write_pattern(&dev1, 0xcd, MIB4, MIB4)?;
    say("\ndemo: restarting node n3: it resyncs the 4 MiB it missed");
    c.start_node("n3")?;
    replbd(c, &["resource", "wait-sync", "demo", "--timeout", "120"]).await?;
    replbd(c, &["resource", "list"]).await?;

    say("\ndemo: moving the primary to n3 and reading everything back there");
    replbd(c, &["resource", "secondary", "n1", "demo"]).await?;
    replbd(c, &["resource", "primary", "n3", "demo"]).await?;
    let dev3 = c.device_of("demo", "n3").await?;
    c.device_hint = ("n3".to_owned(), dev3.clone());
    data::check_pattern(&dev3, 0xab, 0, MIB4)?;
    data::check_pattern(&dev3, 0xcd, MIB4, MIB4)?;
    replbd(c, &["resource", "secondary", "n3", "demo"]).await?;
    replbd(c, &["volume", "list"]).await?;
    Ok(())
}
