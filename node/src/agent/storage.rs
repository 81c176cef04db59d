//! Storage pools on this node: checking a pool and its capacity, creating and deleting the volume
//! of a resource in it, and the metadata on a new volume.
//!
//! `file` and `filethin` pools are directories holding one file per volume
//! (`RESOURCE_00000.img`, data then internal metadata): `file` preallocates the whole file,
//! `filethin` leaves it sparse. `lvm`, `lvmthin`, `zfs` and `zfsthin` run the real tools
//! (`vgs`/`lvcreate`/`lvremove`, `zfs`); a missing tool or kernel feature is reported as the
//! pool's error, naming what to install. `diskless` pools hold nothing.
//!
//! Everything here blocks (file I/O, child processes): callers run it on the blocking pool.

use std::path::{Path, PathBuf};
use std::process::Command;

use replbd_bitmap::{CreateOptions, FileDevice, Geometry, MetaError, NodeId, Params, Placement};
use replbd_proto::agent::{PoolSpec, PoolStatus};
use replbd_replication::LocalDisk;
use tracing::info;

/// Activity-log extents of metadata the agent creates.
const AL_EXTENTS: u32 = replbd_bitmap::layout::DEFAULT_AL_EXTENTS;

/// The name of a resource's volume in its pool.
pub fn volume_name(resource: &str, volume: u32) -> String {
    format!("{resource}_{volume:05}")
}

/// The metadata parameters of a volume of `size` usable bytes.
pub fn params(size: u64, max_peers: usize) -> Params {
    Params {
        data_size: size,
        max_peers,
        bm_block_size: replbd_bitmap::layout::DEFAULT_BM_BLOCK_SIZE,
        al_extents: AL_EXTENTS,
    }
}

fn run(tool: &str, args: &[&str], package: &str) -> Result<String, String> {
    let out = Command::new(tool).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("the `{tool}` command is not installed (install {package})")
        } else {
            format!("running {tool} failed: {e}")
        }
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(format!("{tool} {} failed: {err}", args.join(" ")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn statvfs(dir: &Path) -> Result<(u64, u64), String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: all-zero is a valid `statvfs` (plain integers), overwritten by the call below.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid, writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(format!(
            "statvfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

/// Checks pool `p` (creating a file pool's directory) and reports its capacity.
pub fn probe(p: &PoolSpec) -> PoolStatus {
    let mut st = PoolStatus {
        name: p.name.clone(),
        ..Default::default()
    };
    let result: Result<(u64, u64, bool), String> = match p.driver.as_str() {
        "file" | "filethin" => {
            let dir = Path::new(&p.backing);
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the pool directory {}: {e}", dir.display()))
                .and_then(|()| statvfs(dir))
                .map(|(free, total)| (free, total, false))
        }
        "lvm" => run(
            "vgs",
            &[
                "--noheadings",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "vg_free,vg_size",
                &p.backing,
            ],
            "lvm2",
        )
        .and_then(|o| two_numbers(&o))
        .map(|(f, t)| (f, t, false)),
        "lvmthin" => {
            let lv = p.backing.clone();
            run(
                "lvs",
                &[
                    "--noheadings",
                    "--units",
                    "b",
                    "--nosuffix",
                    "-o",
                    "lv_size,data_percent",
                    &lv,
                ],
                "lvm2",
            )
            .and_then(|o| {
                let mut it = o.split_whitespace();
                let total: f64 = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("lvs printed no size")?;
                let used: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
                Ok(((total * (100.0 - used) / 100.0) as u64, total as u64, true))
            })
        }
        "zfs" | "zfsthin" => run(
            "zfs",
            &["get", "-Hpo", "value", "available,used", &p.backing],
            "zfsutils-linux",
        )
        .and_then(|o| two_numbers(&o))
        .map(|(avail, used)| (avail, avail + used, true)),
        "diskless" => Ok((0, 0, false)),
        other => Err(format!("unknown storage pool driver {other:?}")),
    };
    match result {
        Ok((free, total, snaps)) => {
            st.free_bytes = free;
            st.total_bytes = total;
            st.can_snapshots = snaps;
        }
        Err(e) => st.error = e,
    }
    st
}

fn two_numbers(text: &str) -> Result<(u64, u64), String> {
    let v: Vec<u64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    match v.as_slice() {
        [a, b, ..] => Ok((*a, *b)),
        _ => Err(format!("unexpected tool output {:?}", text.trim())),
    }
}

/// Where the volume of `resource` lives in pool `p`.
pub fn volume_path(p: &PoolSpec, resource: &str, volume: u32) -> Result<PathBuf, String> {
    let name = volume_name(resource, volume);
    match p.driver.as_str() {
        "file" | "filethin" => Ok(Path::new(&p.backing).join(format!("{name}.img"))),
        "lvm" => Ok(PathBuf::from(format!("/dev/{}/{name}", p.backing))),
        "lvmthin" => {
            let vg = p.backing.split('/').next().unwrap_or_default();
            Ok(PathBuf::from(format!("/dev/{vg}/{name}")))
        }
        "zfs" | "zfsthin" => Ok(PathBuf::from(format!("/dev/zvol/{}/{name}", p.backing))),
        other => Err(format!("pool {} ({other}) cannot hold a diskful volume", p.name)),
    }
}

fn fallocate(path: &Path, len: u64) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let len = libc::off_t::try_from(len).map_err(|_| "the volume is too large".to_owned())?;
    // SAFETY: `f` is an open, writable file descriptor for the duration of the call.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len) };
    if rc != 0 {
        return Err(format!(
            "preallocating {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Creates the volume of `resource` in pool `p` with room for `size` bytes and its metadata;
/// returns its path and whether it was created now (`false`: it existed).
pub fn create_volume(
    p: &PoolSpec,
    resource: &str,
    volume: u32,
    size: u64,
    max_peers: usize,
) -> Result<(PathBuf, bool), String> {
    let path = volume_path(p, resource, volume)?;
    let name = volume_name(resource, volume);
    let len = size + Geometry::meta_size_for(&params(size, max_peers));
    let exists = path.exists();
    if exists {
        return Ok((path, false));
    }
    let bytes = len.to_string() + "b";
    match p.driver.as_str() {
        "file" | "filethin" => {
            std::fs::create_dir_all(&p.backing).map_err(|e| format!("create {}: {e}", p.backing))?;
            FileDevice::create(&path, len).map_err(|e| format!("create {}: {e}", path.display()))?;
            if p.driver == "file" {
                fallocate(&path, len)?;
            }
        }
        "lvm" => {
            run("lvcreate", &["-y", "-L", &bytes, "-n", &name, &p.backing], "lvm2")?;
        }
        "lvmthin" => {
            run(
                "lvcreate",
                &["-y", "-V", &bytes, "-T", &p.backing, "-n", &name],
                "lvm2",
            )?;
        }
        "zfs" | "zfsthin" => {
            let ds = format!("{}/{name}", p.backing);
            let mut args = vec!["create"];
            if p.driver == "zfsthin" {
                args.push("-s");
            }
            args.extend(["-V", &bytes, &ds]);
            run("zfs", &args, "zfsutils-linux")?;
        }
        other => return Err(format!("pool {} ({other}) cannot hold a diskful volume", p.name)),
    }
    info!(pool = %p.name, driver = %p.driver, path = %path.display(), bytes = len, "volume created");
    Ok((path, true))
}

/// Deletes the volume of `resource` from pool `p` (nothing if it does not exist).
pub fn delete_volume(p: &PoolSpec, resource: &str, volume: u32) -> Result<(), String> {
    let path = volume_path(p, resource, volume)?;
    if !path.exists() {
        return Ok(());
    }
    let name = volume_name(resource, volume);
    match p.driver.as_str() {
        "file" | "filethin" => {
            std::fs::remove_file(&path).map_err(|e| format!("remove {}: {e}", path.display()))?
        }
        "lvm" => {
            run("lvremove", &["-f", &format!("{}/{name}", p.backing)], "lvm2")?;
        }
        "lvmthin" => {
            let vg = p.backing.split('/').next().unwrap_or_default();
            run("lvremove", &["-f", &format!("{vg}/{name}")], "lvm2")?;
        }
        "zfs" | "zfsthin" => {
            run(
                "zfs",
                &["destroy", &format!("{}/{name}", p.backing)],
                "zfsutils-linux",
            )?;
        }
        _ => {}
    }
    info!(pool = %p.name, path = %path.display(), "volume deleted");
    Ok(())
}

/// Bytes the volume at `path` occupies (a file's allocated blocks; a device's size).
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| {
        if m.file_type().is_file() {
            m.blocks() * 512
        } else {
            m.size()
        }
    })
}

/// Whether `path` holds replbd metadata (valid or damaged).
fn has_metadata(path: &Path) -> bool {
    let Ok(dev) = FileDevice::open_read_only(path) else {
        return false;
    };
    !matches!(replbd_bitmap::inspect(&dev), Err(MetaError::NoMetadata { .. }))
}

/// Creates internal metadata for node `node_id` on the volume at `path` when it has none; with a
/// nonzero `initial_uuid` the new data is declared UpToDate at that generation (the first replicas
/// of a new resource: all-zero volumes need no initial sync). Existing metadata is never touched.
/// Blocks; declaring the data UpToDate opens the volume's store, so call it inside a tokio runtime
/// context (e.g. `spawn_blocking`).
pub fn ensure_metadata(
    path: &Path,
    size: u64,
    node_id: u8,
    max_peers: usize,
    initial_uuid: u64,
) -> Result<bool, String> {
    if has_metadata(path) {
        return Ok(false);
    }
    let node = NodeId::new(node_id).ok_or_else(|| format!("node id {node_id} is invalid"))?;
    let dev = FileDevice::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    replbd_bitmap::create(
        &dev,
        &CreateOptions {
            placement: Placement::Internal,
            params: params(size, max_peers),
            node_id: node,
        },
    )
    .map_err(|e| format!("creating metadata on {}: {e}", path.display()))?;
    drop(dev);
    if initial_uuid != 0 {
        let disk = LocalDisk::attach(path, path).map_err(|e| format!("attach {}: {e}", path.display()))?;
        let declared = disk.declare_up_to_date(initial_uuid).map_err(|e| e.to_string());
        let closed = disk.meta.close().map_err(|e| e.to_string());
        declared?;
        closed?;
    }
    info!(path = %path.display(), node_id, initial = initial_uuid != 0, "metadata created");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ensure_metadata` opens the volume's data store, which needs a tokio runtime (the agent calls
    // it from `spawn_blocking`).
    #[tokio::test]
    async fn file_pools_create_probe_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let pool = PoolSpec {
            name: "p".into(),
            driver: "filethin".into(),
            backing: dir.path().join("pool").display().to_string(),
        };
        let st = probe(&pool);
        assert!(st.error.is_empty(), "{}", st.error);
        assert!(st.total_bytes > 0);
        let (path, created) = create_volume(&pool, "r0", 0, 4 << 20, 2).unwrap();
        assert!(created);
        assert!(path.ends_with("pool/r0_00000.img"));
        assert!(ensure_metadata(&path, 4 << 20, 1, 2, 0x5EED_5EED_5EED_5EEC).unwrap());
        assert!(
            !ensure_metadata(&path, 4 << 20, 1, 2, 0).unwrap(),
            "existing metadata is kept"
        );
        assert!(!create_volume(&pool, "r0", 0, 4 << 20, 2).unwrap().1);
        delete_volume(&pool, "r0", 0).unwrap();
        assert!(!path.exists());
        let thick = PoolSpec {
            driver: "file".into(),
            ..pool
        };
        let (path, _) = create_volume(&thick, "r1", 0, 4 << 20, 2).unwrap();
        assert!(allocated(&path) >= 4 << 20, "a file pool preallocates");
    }

    #[test]
    fn missing_tools_are_named() {
        let st = probe(&PoolSpec {
            name: "z".into(),
            driver: "zfs".into(),
            backing: "tank".into(),
        });
        if st.error.is_empty() {
            println!("SKIPPED: zfs is installed here and has a pool named tank");
            return;
        }
        assert!(
            st.error.contains("zfs") && (st.error.contains("not installed") || st.error.contains("failed")),
            "{}",
            st.error
        );
    }
}
