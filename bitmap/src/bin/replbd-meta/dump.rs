//! `replbd-meta dump` and `replbd-meta show-gi`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use replbd_bitmap::meta::bitmap_bytes;
use replbd_bitmap::units::{format_size, human_size};
use replbd_bitmap::{FileDevice, Inspection, NodeFlags, inspect};
use serde::Serialize;

fn uuid(u: u64) -> String {
    format!("{u:016X}")
}

#[derive(Serialize)]
struct PeerJson {
    slot: u8,
    node_id: Option<u8>,
    bitmap_uuid: String,
    flags: Vec<&'static str>,
    dirty_bytes: u64,
}

#[derive(Serialize)]
struct DumpJson {
    magic: &'static str,
    version: u32,
    size_bytes: u64,
    placement: replbd_bitmap::Placement,
    meta_offset: u64,
    meta_size: u64,
    max_peers: usize,
    node_id: u8,
    /// The resource it belongs to (null: not recorded yet).
    resource: Option<String>,
    bm_block_size: u64,
    al_extents: u32,
    current_uuid: String,
    history_uuids: Vec<String>,
    dagtag: u64,
    flags: Vec<&'static str>,
    clean: bool,
    active_extents: Option<usize>,
    peers: Vec<PeerJson>,
}

pub fn read(file: &Path) -> Result<Inspection> {
    let dev = FileDevice::open_read_only(file).with_context(|| format!("cannot open {}", file.display()))?;
    Ok(inspect(&dev)?)
}

fn to_json(ins: &Inspection) -> DumpJson {
    let sb = &ins.superblock;
    let g = &sb.geometry;
    DumpJson {
        magic: "RPLBDMD1",
        version: replbd_bitmap::layout::FORMAT_VERSION,
        size_bytes: g.data_size(),
        placement: g.placement,
        meta_offset: g.meta_offset,
        meta_size: g.meta_size(),
        max_peers: g.max_peers(),
        node_id: sb.node_id.get(),
        resource: (!sb.resource.is_empty()).then(|| sb.resource.clone()),
        bm_block_size: g.bm_block_size(),
        al_extents: g.al_extents(),
        current_uuid: uuid(sb.gi.current),
        history_uuids: sb
            .gi
            .history
            .iter()
            .filter(|&&h| h != 0)
            .map(|&h| uuid(h))
            .collect(),
        dagtag: sb.gi.dagtag,
        flags: sb.flags.names(),
        clean: sb.flags.contains(NodeFlags::AL_CLEAN),
        active_extents: ins
            .al
            .as_ref()
            .ok()
            .filter(|_| !sb.flags.contains(NodeFlags::AL_CLEAN))
            .map(|r| r.active.len()),
        peers: sb
            .gi
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| PeerJson {
                slot: i as u8,
                node_id: p.node.map(|n| n.get()),
                bitmap_uuid: uuid(p.bitmap_uuid),
                flags: p.flags.names(),
                dirty_bytes: bitmap_bytes(&ins.bitmaps[i], g.bm_block_size(), g.data_size()),
            })
            .collect(),
    }
}

pub fn dump(file: &Path, json: bool) -> Result<ExitCode> {
    let ins = read(file)?;
    let d = to_json(&ins);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &d)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "metadata     {} ({} v{}, {})",
        file.display(),
        d.magic,
        d.version,
        serde_json::to_string(&d.placement)?.trim_matches('"')
    )?;
    writeln!(
        out,
        "data size    {} ({} bytes)",
        human_size(d.size_bytes),
        d.size_bytes
    )?;
    writeln!(
        out,
        "metadata     {} at offset {}",
        human_size(d.meta_size),
        d.meta_offset
    )?;
    writeln!(out, "node id      {}", d.node_id)?;
    writeln!(
        out,
        "resource     {}",
        d.resource
            .as_deref()
            .unwrap_or("(not recorded: stamped at the next attach)")
    )?;
    writeln!(
        out,
        "bitmap       {} per bit, {} peer slots",
        format_size(d.bm_block_size),
        d.max_peers
    )?;
    writeln!(out, "al-extents   {}", d.al_extents)?;
    writeln!(out, "current      {}", d.current_uuid)?;
    writeln!(
        out,
        "history      {}",
        if d.history_uuids.is_empty() {
            "-".to_string()
        } else {
            d.history_uuids.join(" ")
        }
    )?;
    writeln!(out, "dagtag       {}", d.dagtag)?;
    writeln!(
        out,
        "flags        {}",
        if d.flags.is_empty() {
            "-".to_string()
        } else {
            d.flags.join(",")
        }
    )?;
    writeln!(
        out,
        "clean        {}{}",
        if d.clean { "yes" } else { "no" },
        d.active_extents
            .map(|n| format!(" ({n} activity-log extents to apply)"))
            .unwrap_or_default()
    )?;
    writeln!(out, "slot  node  bitmap-uuid       out-of-sync  flags")?;
    for p in &d.peers {
        writeln!(
            out,
            "{:<5} {:<5} {} {:>11}  {}",
            p.slot,
            p.node_id.map_or("-".to_string(), |n| n.to_string()),
            p.bitmap_uuid,
            human_size(p.dirty_bytes),
            if p.flags.is_empty() {
                "-".to_string()
            } else {
                p.flags.join(",")
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `CURRENT:BITMAP(slot 0):…:BITMAP(slot N-1):HISTORY1:HISTORY2:FLAGS`, like `drbdadm show-gi`.
pub fn show_gi(file: &Path) -> Result<ExitCode> {
    let ins = read(file)?;
    let gi = &ins.superblock.gi;
    let mut fields = vec![uuid(gi.current)];
    fields.extend(gi.peers.iter().map(|p| uuid(p.bitmap_uuid)));
    fields.push(uuid(gi.history[0]));
    fields.push(uuid(gi.history[1]));
    let flags = ins.superblock.flags.names();
    fields.push(if flags.is_empty() {
        "-".to_string()
    } else {
        flags.join(",")
    });
    writeln!(std::io::stdout().lock(), "{}", fields.join(":"))?;
    Ok(ExitCode::SUCCESS)
}
