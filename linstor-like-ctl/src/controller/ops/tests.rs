//! The controller's rules on a small cluster: bad input gives errors that name the cause.

use super::*;
use crate::placement::PoolInfo;

macro_rules! apply {
    ($c:ident, $e:expr $(,)?) => {{
        let o = $e;
        apply_outcome(&mut $c, o)
    }};
}

fn apply_outcome(c: &mut Cluster, o: Result<Outcome, ApiError>) -> Vec<String> {
    let o = o.unwrap();
    for ch in o.changes {
        c.apply(ch);
    }
    o.messages
}

fn cluster() -> (Cluster, Vec<NodeInfo>) {
    let mut c = Cluster::default();
    for ch in c.bootstrap() {
        c.apply(ch);
    }
    let mut infos = Vec::new();
    for (i, n) in ["n1", "n2", "n3"].iter().enumerate() {
        apply!(
            c,
            node_create(
                &c,
                Node {
                    name: (*n).into(),
                    node_type: NodeType::Satellite,
                    address: format!("127.0.0.{}", i + 1),
                    port: 3366,
                    props: Props::new(),
                    evicted: false,
                    evacuating: false,
                },
            ),
        );
        apply!(
            c,
            pool_create(
                &c,
                StoragePool {
                    node: (*n).into(),
                    name: "pool1".into(),
                    driver: Driver::FileThin,
                    backing: "/tmp/p".into(),
                    props: Props::new(),
                },
            ),
        );
        infos.push(NodeInfo {
            name: (*n).into(),
            online: true,
            hosts_resources: true,
            excluded: None,
            props: Props::new(),
            pools: vec![PoolInfo {
                name: "pool1".into(),
                driver: Driver::FileThin,
                free: Some(1 << 30),
            }],
            resources: Default::default(),
        });
    }
    (c, infos)
}

#[test]
fn unknown_objects_are_named_with_what_exists() {
    let (c, _) = cluster();
    let e = node_delete(&c, "n9").unwrap_err().to_string();
    assert_eq!(e, "node n9 does not exist (known: n1, n2, n3)");
    let e = resource_delete(&c, "r9", "n1").unwrap_err().to_string();
    assert_eq!(
        e,
        "resource definition r9 does not exist (there are no resource definitions)"
    );
    let e = definition_create(&c, "r0", "nogroup", 0, Props::new())
        .unwrap_err()
        .to_string();
    assert_eq!(e, "resource group nogroup does not exist (known: DfltRscGrp)");
}

#[test]
fn duplicate_names_are_refused() {
    let (mut c, _) = cluster();
    let dup = Node {
        name: "N1".into(),
        node_type: NodeType::Satellite,
        address: "10.0.0.1".into(),
        port: 3366,
        props: Props::new(),
        evicted: false,
        evacuating: false,
    };
    let e = node_create(&c, dup).unwrap_err().to_string();
    assert_eq!(
        e,
        "node N1 already exists as n1 (names differing only in case are not allowed)"
    );
    apply!(c, definition_create(&c, "r0", "", 0, Props::new()));
    let e = definition_create(&c, "r0", "", 0, Props::new())
        .unwrap_err()
        .to_string();
    assert_eq!(e, "resource definition r0 already exists");
}

#[test]
fn ports_node_ids_and_first_replicas() {
    let (mut c, infos) = cluster();
    apply!(c, definition_create(&c, "r0", "", 0, Props::new()));
    apply!(c, definition_create(&c, "r1", "", 0, Props::new()));
    assert_eq!(c.definitions["r0"].port, 7000);
    assert_eq!(c.definitions["r1"].port, 7001);
    assert_ne!(c.definitions["r0"].secret, c.definitions["r1"].secret);
    apply!(c, volume_create(&c, "r0", None, 64 << 20, 0));
    let m = apply!(
        c,
        resource_create(
            &c,
            &infos,
            "r0",
            Where::Auto {
                count: Count::Total(2),
                placement: Placement::default(),
            },
        ),
    );
    assert_eq!(m.len(), 3, "{m:?}");
    let rs: Vec<&Resource> = c.resources_of("r0").collect();
    let ids: Vec<u8> = rs.iter().map(|r| r.node_id).collect();
    assert_eq!(ids.len(), 3);
    assert!(rs.iter().filter(|r| !r.diskless()).all(|r| r.initial));
    let tb: Vec<&&Resource> = rs
        .iter()
        .filter(|r| r.flags.contains(&ResourceFlag::TieBreaker))
        .collect();
    assert_eq!(tb.len(), 1);
    // Deleting a diskful replica leaves one: the tiebreaker goes too.
    let diskful = rs.iter().find(|r| !r.diskless()).unwrap().node.clone();
    let m = apply!(c, resource_delete(&c, "r0", &diskful));
    assert!(m.iter().any(|l| l.contains("tiebreaker")), "{m:?}");
    assert_eq!(c.resources_of("r0").count(), 1);
    // A replica added later is not a first one: it syncs.
    let m = apply!(
        c,
        resource_create(
            &c,
            &infos,
            "r0",
            Where::Auto {
                count: Count::Additional(1),
                placement: Placement::default(),
            },
        ),
    );
    assert!(m[0].contains("placed on"), "{m:?}");
    assert_eq!(
        c.resources_of("r0")
            .filter(|r| !r.initial && !r.diskless())
            .count(),
        1
    );
}

#[test]
fn device_minors_are_unique_and_come_from_the_range() {
    let (mut c, _) = cluster();
    for rd in ["r0", "r1", "r2", "r3"] {
        apply!(c, definition_create(&c, rd, "", 0, Props::new()));
    }
    let m = apply!(c, volume_create(&c, "r0", None, 64 << 20, 0));
    assert!(m[0].contains("minor 1000"), "{m:?}");
    apply!(c, volume_create(&c, "r1", None, 64 << 20, 1001));
    let e = volume_create(&c, "r2", None, 64 << 20, 1001)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "minor 1001 is already used by volume r1/0");
    let e = volume_create(&c, "r2", None, 64 << 20, 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(e.contains("out of range"), "{e}");
    // The next free one skips those taken.
    apply!(c, volume_create(&c, "r2", None, 64 << 20, 0));
    assert_eq!(c.definitions["r2"].volumes[&0].minor, 1002);
    // A full range says which property to widen; a bad range is refused when set.
    c.props.insert(MINOR_RANGE_KEY.into(), "1000-1002".into());
    let e = volume_create(&c, "r3", None, 64 << 20, 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("every minor of 1000-1002 is in use") && e.contains(MINOR_RANGE_KEY),
        "{e}"
    );
    let bad = [(MINOR_RANGE_KEY.to_owned(), "5000-10".to_owned())]
        .into_iter()
        .collect();
    let e = props_set(&c, "controller", "", "", &bad, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a range like 1000-49999"), "{e}");
}

#[test]
fn impossible_placement_and_wrong_sizes() {
    let (mut c, infos) = cluster();
    apply!(c, definition_create(&c, "r0", "", 0, Props::new()));
    let e = resource_create(
        &c,
        &infos,
        "r0",
        Where::Auto {
            count: Count::Total(2),
            placement: Placement::default(),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("has no volume definition"), "{e}");
    let e = volume_create(&c, "r0", None, 0, 0).unwrap_err().to_string();
    assert!(e.contains("size of 0"), "{e}");
    apply!(c, volume_create(&c, "r0", None, 64 << 20, 0));
    let e = resource_create(
        &c,
        &infos,
        "r0",
        Where::Auto {
            count: Count::Total(4),
            placement: Placement::default(),
        },
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "cannot place 4 more diskful replica(s) of r0: only 3 node(s) qualify (n1, n2, n3)"
    );
    apply!(
        c,
        resource_create(
            &c,
            &infos,
            "r0",
            Where::Nodes {
                nodes: vec!["n1".into()],
                pool: String::new(),
                diskless: false
            }
        )
    );
    let e = volume_set_size(&c, "r0", 0, 32 << 20).unwrap_err().to_string();
    assert!(e.contains("shrinking a deployed volume"), "{e}");
    let e = resource_create(
        &c,
        &infos,
        "r0",
        Where::Nodes {
            nodes: vec!["n1".into()],
            pool: String::new(),
            diskless: false,
        },
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "resource r0 on node n1 already exists");
    let e = resource_create(
        &c,
        &infos,
        "r0",
        Where::Nodes {
            nodes: vec!["n2".into()],
            pool: "nope".into(),
            diskless: false,
        },
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "storage pool nope on node n2 does not exist (known: pool1)");
}

#[test]
fn pools_are_checked() {
    let (c, _) = cluster();
    let p = |driver, backing: &str| StoragePool {
        node: "n1".into(),
        name: "p2".into(),
        driver,
        backing: backing.into(),
        props: Props::new(),
    };
    assert!(
        pool_create(&c, p(Driver::File, "rel/dir"))
            .unwrap_err()
            .to_string()
            .contains("absolute path")
    );
    assert!(
        pool_create(&c, p(Driver::LvmThin, "vg0"))
            .unwrap_err()
            .to_string()
            .contains("VG/thinpool")
    );
    assert!(pool_create(&c, p(Driver::Diskless, "")).is_ok());
    let mut dup = p(Driver::File, "/x");
    dup.name = "pool1".into();
    assert_eq!(
        pool_create(&c, dup).unwrap_err().to_string(),
        "storage pool pool1 on node n1 already exists"
    );
}
