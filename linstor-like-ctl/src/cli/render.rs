//! Lists as LINSTOR's tables (columns from its client) or, with `-m`, as JSON.

use replbd_proto::controller as pb;
use serde_json::{Value, json};

use super::out;
use super::table::render;
use crate::model::size::human;

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix seconds.
pub fn timestamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn print_json(v: Value) {
    out(&serde_json::to_string_pretty(&v).unwrap_or_default());
}

/// `node list`.
pub fn nodes(json: bool, l: &pb::NodeListReply) {
    if json {
        print_json(Value::Array(
            l.nodes
                .iter()
                .map(|n| json!({"name": n.name, "node_type": n.node_type, "address": n.address, "port": n.port, "state": n.state, "props": n.props, "offline_since": n.offline_since, "evacuating": n.evacuating}))
                .collect(),
        ));
        return;
    }
    let rows: Vec<Vec<String>> = l
        .nodes
        .iter()
        .map(|n| {
            let state = if n.evacuating && n.state == "Online" {
                "Online(EVACUATE)".into()
            } else {
                n.state.clone()
            };
            vec![
                n.name.clone(),
                n.node_type.clone(),
                format!("{}:{} (PLAIN)", n.address, n.port),
                state,
            ]
        })
        .collect();
    out(&render(&["Node", "NodeType", "Addresses", "State"], &rows, &[]));
}

/// `storage-pool list`.
pub fn pools(json: bool, l: &pb::StoragePoolListReply) {
    if json {
        print_json(Value::Array(
            l.pools
                .iter()
                .map(|p| json!({"name": p.name, "node": p.node, "driver": p.driver, "pool_name": p.backing, "free_bytes": p.free_bytes, "total_bytes": p.total_bytes, "capacity_known": p.capacity_known, "can_snapshots": p.can_snapshots, "state": p.state, "props": p.props}))
                .collect(),
        ));
        return;
    }
    let rows: Vec<Vec<String>> = l
        .pools
        .iter()
        .map(|p| {
            let cap = |b: u64| if p.capacity_known { human(b) } else { String::new() };
            vec![
                p.name.clone(),
                p.node.clone(),
                p.driver.clone(),
                p.backing.clone(),
                cap(p.free_bytes),
                cap(p.total_bytes),
                p.can_snapshots.to_string(),
                p.state.clone(),
            ]
        })
        .collect();
    out(&render(
        &[
            "StoragePool",
            "Node",
            "Driver",
            "PoolName",
            "FreeCapacity",
            "TotalCapacity",
            "CanSnapshots",
            "State",
        ],
        &rows,
        &["FreeCapacity", "TotalCapacity"],
    ));
}

fn placement_json(p: Option<&pb::PlacementSpec>) -> Value {
    let p = p.cloned().unwrap_or_default();
    json!({"place_count": p.place_count, "storage_pools": p.storage_pools, "replicas_on_same": p.replicas_on_same, "replicas_on_different": p.replicas_on_different, "do_not_place_with": p.do_not_place_with, "diskless_on_remaining": p.diskless_on_remaining})
}

/// `resource-group list`.
pub fn groups(json: bool, l: &pb::ResourceGroupListReply) {
    if json {
        print_json(Value::Array(
            l.groups
                .iter()
                .map(|g| json!({"name": g.name, "description": g.description, "select_filter": placement_json(g.placement.as_ref()), "props": g.props}))
                .collect(),
        ));
        return;
    }
    let rows: Vec<Vec<String>> = l
        .groups
        .iter()
        .map(|g| {
            let p = g.placement.clone().unwrap_or_default();
            let mut sel = Vec::new();
            if p.place_count > 0 {
                sel.push(format!("PlaceCount: {}", p.place_count));
            }
            if !p.storage_pools.is_empty() {
                sel.push(format!("StoragePool(s): {}", p.storage_pools.join(", ")));
            }
            if !p.replicas_on_same.is_empty() {
                sel.push(format!("ReplicasOnSame: {}", p.replicas_on_same.join(", ")));
            }
            if !p.replicas_on_different.is_empty() {
                sel.push(format!(
                    "ReplicasOnDifferent: {}",
                    p.replicas_on_different.join(", ")
                ));
            }
            if !p.do_not_place_with.is_empty() {
                sel.push(format!("DoNotPlaceWith: {}", p.do_not_place_with.join(", ")));
            }
            if p.diskless_on_remaining {
                sel.push("DisklessOnRemaining: True".into());
            }
            vec![
                g.name.clone(),
                sel.join("; "),
                String::new(),
                g.description.clone(),
            ]
        })
        .collect();
    out(&render(
        &["ResourceGroup", "SelectFilter", "VlmNrs", "Description"],
        &rows,
        &[],
    ));
}

/// `resource-definition list`.
pub fn definitions(json: bool, l: &pb::ResourceDefinitionListReply) {
    if json {
        print_json(Value::Array(
            l.definitions
                .iter()
                .map(|d| json!({"name": d.name, "resource_group": d.group, "port": d.port, "state": d.state, "props": d.props}))
                .collect(),
        ));
        return;
    }
    let rows: Vec<Vec<String>> = l
        .definitions
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.group.clone(),
                d.port.to_string(),
                d.state.clone(),
            ]
        })
        .collect();
    out(&render(
        &["ResourceName", "ResourceGroup", "Port", "State"],
        &rows,
        &["Port"],
    ));
}

/// `volume-definition list`.
pub fn volume_definitions(json: bool, l: &pb::VolumeDefinitionListReply) {
    if json {
        print_json(Value::Array(
            l.volumes
                .iter()
                .map(|v| json!({"resource": v.resource, "volume_number": v.number, "minor": if v.minor == 0 { Value::Null } else { json!(v.minor) }, "size_bytes": v.size_bytes, "state": v.state}))
                .collect(),
        ));
        return;
    }
    let rows: Vec<Vec<String>> = l
        .volumes
        .iter()
        .map(|v| {
            vec![
                v.resource.clone(),
                v.number.to_string(),
                if v.minor == 0 {
                    "-".to_owned()
                } else {
                    v.minor.to_string()
                },
                human(v.size_bytes),
                v.state.clone(),
            ]
        })
        .collect();
    out(&render(
        &["ResourceName", "VolumeNr", "VolumeMinor", "Size", "State"],
        &rows,
        &["Size"],
    ));
}

fn volume_json(v: &pb::Volume) -> Value {
    json!({"resource": v.resource, "node": v.node, "volume_number": v.number, "storage_pool": v.storage_pool, "device": v.device, "allocated_bytes": v.allocated_bytes, "size_bytes": v.size_bytes, "state": v.state, "disk_state": v.disk, "repl": v.repl, "in_use": v.in_use, "done_percent": if v.done_percent >= 0.0 { json!(v.done_percent) } else { Value::Null }})
}

/// `resource list`.
pub fn resources(json: bool, l: &pb::ResourceListReply) {
    if json {
        print_json(Value::Array(
            l.resources
                .iter()
                .map(|r| {
                    json!({"name": r.name, "node": r.node, "port": r.port, "node_id": r.node_id, "flags": r.flags, "usage": r.usage, "conns": r.conns, "state": r.state, "role": r.role, "created_on": r.created_on, "error": r.error,
                        "connections": r.connections.iter().map(|c| json!({"peer": c.peer, "connection": c.connection, "replication": c.replication, "peer_disk": c.peer_disk})).collect::<Vec<_>>(),
                        "volumes": r.volumes.iter().map(volume_json).collect::<Vec<_>>()})
                })
                .collect(),
        ));
        return;
    }
    let rows: Vec<Vec<String>> = l
        .resources
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.node.clone(),
                r.port.to_string(),
                r.usage.clone(),
                r.conns.clone(),
                r.state.clone(),
                timestamp(r.created_on),
            ]
        })
        .collect();
    out(&render(
        &[
            "ResourceName",
            "Node",
            "Port",
            "Usage",
            "Conns",
            "State",
            "CreatedOn",
        ],
        &rows,
        &["State"],
    ));
    for r in l.resources.iter().filter(|r| !r.error.is_empty()) {
        out(&format!("ERROR: {} on {}: {}", r.name, r.node, r.error));
    }
}

/// `volume list`.
pub fn volumes(json: bool, l: &pb::VolumeListReply) {
    if json {
        print_json(Value::Array(l.volumes.iter().map(volume_json).collect()));
        return;
    }
    let rows: Vec<Vec<String>> = l
        .volumes
        .iter()
        .map(|v| {
            vec![
                v.resource.clone(),
                v.node.clone(),
                v.storage_pool.clone(),
                v.number.to_string(),
                v.device.clone(),
                if v.allocated_bytes > 0 {
                    human(v.allocated_bytes)
                } else {
                    String::new()
                },
                if v.in_use { "InUse".into() } else { "Unused".into() },
                v.state.clone(),
                v.repl.clone(),
            ]
        })
        .collect();
    out(&render(
        &[
            "Resource",
            "Node",
            "StoragePool",
            "VolNr",
            "DeviceName",
            "Allocated",
            "InUse",
            "State",
            "Repl",
        ],
        &rows,
        &["Allocated", "State"],
    ));
}

/// Property lists.
pub fn props(json: bool, l: &pb::PropertyListReply) {
    if json {
        print_json(Value::Array(
            l.props
                .iter()
                .map(|p| json!({"key": p.key, "value": p.value, "source": p.source}))
                .collect(),
        ));
        return;
    }
    let rows: Vec<Vec<String>> = l
        .props
        .iter()
        .map(|p| vec![p.key.clone(), p.value.clone(), p.source.clone()])
        .collect();
    out(&render(&["Key", "Value", "Source"], &rows, &[]));
}

/// `error-reports list`.
pub fn reports(json: bool, l: &pb::ErrorReportListReply) {
    if json {
        print_json(Value::Array(l.reports.iter().map(report_json).collect()));
        return;
    }
    let rows: Vec<Vec<String>> = l
        .reports
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                timestamp(r.time),
                r.origin.clone(),
                r.message.clone(),
            ]
        })
        .collect();
    out(&render(&["Id", "Datetime", "Node", "Exception"], &rows, &[]));
}

fn report_json(r: &pb::ErrorReport) -> Value {
    json!({"id": r.id, "time": r.time, "origin": r.origin, "context": r.context, "message": r.message, "details": r.details})
}

/// `error-reports show`.
pub fn report(json: bool, r: &pb::ErrorReport) {
    if json {
        print_json(report_json(r));
        return;
    }
    out(&format!(
        "ERROR REPORT {}\n\nTime:     {}\nOrigin:   {}\nContext:  {}\nMessage:  {}\n\n{}",
        r.id,
        timestamp(r.time),
        r.origin,
        r.context,
        r.message,
        r.details
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(1_658_938_456), "2022-07-27 16:14:16");
    }
}
