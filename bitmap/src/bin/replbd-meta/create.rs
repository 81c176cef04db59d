//! `replbd-meta create`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use replbd_bitmap::layout::{DEFAULT_AL_EXTENTS, DEFAULT_BM_BLOCK_SIZE};
use replbd_bitmap::units::{format_size, human_size, parse_size};
use replbd_bitmap::{
    CreateOptions, FileDevice, Geometry, MetaError, NodeId, Params, Placement, create, inspect,
};

#[derive(Args)]
#[command(group = clap::ArgGroup::new("placement").required(true))]
pub struct CreateArgs {
    /// External metadata in this file (created or resized to fit; a block device must be large
    /// enough). Requires --size.
    #[arg(long, group = "placement", requires = "size", value_name = "FILE")]
    external: Option<PathBuf>,
    /// Internal metadata at the end of this data device or file; the data area is what precedes it.
    #[arg(long, group = "placement", value_name = "DEVICE_OR_FILE")]
    internal: Option<PathBuf>,
    /// Size of the data the external metadata describes (e.g. 64MiB, 1TiB).
    #[arg(long, value_parser = parse_size_arg)]
    size: Option<u64>,
    /// Number of peer bitmap slots (1–32).
    #[arg(long)]
    max_peers: usize,
    /// This node's id (0–63).
    #[arg(long, default_value_t = 0)]
    node_id: u32,
    /// Bytes of data per bitmap bit: a power of two from 4KiB to 1MiB.
    #[arg(long, default_value = "4KiB", value_parser = parse_size_arg)]
    bm_block_size: u64,
    /// Activity-log extents (4 MiB each) that may be hot at once (67–65534).
    #[arg(long, default_value_t = DEFAULT_AL_EXTENTS)]
    al_extents: u32,
    /// Overwrite existing replbd metadata.
    #[arg(long)]
    force: bool,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

/// Refuses to overwrite valid metadata without --force.
fn guard_existing(path: &Path, force: bool) -> Result<()> {
    let Ok(dev) = FileDevice::open_read_only(path) else {
        return Ok(());
    };
    match inspect(&dev) {
        Ok(ins) if !force => bail!(
            "{} already holds replbd metadata (node {}, {} of data, {} peer slots); pass --force to overwrite it",
            path.display(),
            ins.superblock.node_id,
            format_size(ins.superblock.geometry.data_size()),
            ins.superblock.geometry.max_peers()
        ),
        _ => Ok(()),
    }
}

pub fn run(args: &CreateArgs) -> Result<ExitCode> {
    let node_id = u8::try_from(args.node_id)
        .ok()
        .and_then(NodeId::new)
        .ok_or(MetaError::Geometry(replbd_bitmap::GeometryError::NodeId(
            args.node_id,
        )))?;
    let params = Params {
        data_size: args.size.unwrap_or(DEFAULT_BM_BLOCK_SIZE),
        max_peers: args.max_peers,
        bm_block_size: args.bm_block_size,
        al_extents: args.al_extents,
    };
    let (path, placement) = match (&args.external, &args.internal) {
        (Some(p), None) => (p, Placement::External),
        (None, Some(p)) => (p, Placement::Internal),
        _ => bail!("give exactly one of --external FILE or --internal DEVICE_OR_FILE"),
    };
    params.validate().map_err(MetaError::Geometry)?;
    guard_existing(path, args.force)?;
    let dev = match placement {
        Placement::External => {
            let meta_size = Geometry::meta_size_for(&params);
            let is_block_device = std::fs::metadata(path).map(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_block_device()
            });
            if matches!(is_block_device, Ok(true)) {
                FileDevice::open(path).with_context(|| format!("cannot open {}", path.display()))?
            } else {
                FileDevice::create(path, meta_size)
                    .with_context(|| format!("cannot create {}", path.display()))?
            }
        }
        Placement::Internal => FileDevice::open(path).with_context(|| {
            format!(
                "cannot open {} (internal metadata needs an existing device or file)",
                path.display()
            )
        })?,
    };
    let sb = create(
        &dev,
        &CreateOptions {
            placement,
            params,
            node_id,
        },
    )?;
    let g = sb.geometry;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "created {} metadata on {}: data {}, {} peer slots, {} per bitmap bit, {} al-extents, metadata {}",
        match placement {
            Placement::External => "external",
            Placement::Internal => "internal",
        },
        path.display(),
        human_size(g.data_size()),
        g.max_peers(),
        format_size(g.bm_block_size()),
        g.al_extents(),
        human_size(g.meta_size()),
    )?;
    Ok(ExitCode::SUCCESS)
}
