//! Placement on fixtures: each test builds a small cluster and checks the exact choice, or the
//! exact reason a placement fails.

use super::*;
use crate::model::{Driver, Placement};

const MIB: u64 = 1 << 20;

/// A node with one file pool `pool1` with `free` MiB free and labels `zone`/`rack`.
fn node(name: &str, free_mib: u64, labels: &[(&str, &str)]) -> NodeInfo {
    NodeInfo {
        name: name.to_owned(),
        online: true,
        hosts_resources: true,
        excluded: None,
        props: labels
            .iter()
            .map(|(k, v)| (format!("Aux/{k}"), (*v).to_owned()))
            .collect(),
        pools: vec![PoolInfo {
            name: "pool1".to_owned(),
            driver: Driver::File,
            free: Some(free_mib * MIB),
        }],
        resources: Default::default(),
    }
}

fn req<'a>(count: Count, placement: &'a Placement, existing: &'a [Existing]) -> Request<'a> {
    Request {
        resource: "r0",
        size: 100 * MIB,
        count,
        placement,
        existing,
        oversubscription: 20.0,
        tiebreaker: true,
    }
}

fn names(plan: &Plan) -> Vec<&str> {
    plan.diskful.iter().map(|c| c.node.as_str()).collect()
}

#[test]
fn most_free_space_wins_and_ties_break_by_name() {
    let nodes = [
        node("n1", 500, &[]),
        node("n2", 900, &[]),
        node("n3", 500, &[]),
        node("n4", 700, &[]),
    ];
    let p = Placement::default();
    let plan = place(&nodes, &req(Count::Total(3), &p, &[])).unwrap();
    assert_eq!(names(&plan), ["n2", "n4", "n1"]);
    assert!(
        plan.diskless.is_empty(),
        "three diskful replicas need no tiebreaker"
    );
    // The same snapshot always gives the same answer.
    assert_eq!(place(&nodes, &req(Count::Total(3), &p, &[])).unwrap(), plan);
}

#[test]
fn two_diskful_replicas_get_a_diskless_tiebreaker_on_the_least_loaded_node() {
    let mut nodes = vec![
        node("n1", 900, &[]),
        node("n2", 800, &[]),
        node("n3", 10, &[]),
        node("n4", 10, &[]),
    ];
    nodes[2].resources.insert("other".to_owned());
    let p = Placement::default();
    let plan = place(&nodes, &req(Count::Total(2), &p, &[])).unwrap();
    assert_eq!(names(&plan), ["n1", "n2"]);
    assert_eq!(
        plan.diskless,
        [DisklessChoice {
            node: "n4".to_owned(),
            tiebreaker: true
        }]
    );
    let mut no_tb = req(Count::Total(2), &p, &[]);
    no_tb.tiebreaker = false;
    assert!(place(&nodes, &no_tb).unwrap().diskless.is_empty());
}

#[test]
fn storage_pool_list_limits_the_pools() {
    let mut nodes = vec![node("n1", 900, &[]), node("n2", 800, &[]), node("n3", 700, &[])];
    nodes[1].pools.push(PoolInfo {
        name: "fast".to_owned(),
        driver: Driver::FileThin,
        free: Some(10 * MIB),
    });
    let p = Placement {
        storage_pools: vec!["fast".to_owned()],
        ..Placement::default()
    };
    let plan = place(&nodes, &req(Count::Total(1), &p, &[])).unwrap();
    // A thin pool with 10 MiB free may hold 200 MiB at the oversubscription ratio of 20.
    assert_eq!(
        plan.diskful,
        [DiskfulChoice {
            node: "n2".to_owned(),
            pool: "fast".to_owned()
        }]
    );
    let err = place(&nodes, &req(Count::Total(2), &p, &[])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot place 2 more diskful replica(s) of r0: only 1 node(s) qualify (n2); not used: n1: has no storage pool named fast; n3: has no storage pool named fast"
    );
}

#[test]
fn full_pools_and_offline_nodes_are_named_in_the_error() {
    let mut nodes = vec![node("n1", 900, &[]), node("n2", 50, &[]), node("n3", 700, &[])];
    nodes[2].online = false;
    let p = Placement::default();
    let err = place(&nodes, &req(Count::Total(3), &p, &[])).unwrap_err();
    let PlacementError::NotEnoughNodes {
        qualifying,
        rejected,
        wanted,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*wanted, 3);
    assert_eq!(qualifying, &["n1"]);
    assert_eq!(rejected["n2"], ["pool pool1 has 50 MiB free, needs 100 MiB"]);
    assert_eq!(rejected["n3"], ["OFFLINE"]);
}

#[test]
fn replicas_on_same_picks_a_zone_with_enough_nodes() {
    let nodes = [
        node("a1", 990, &[("zone", "a")]),
        node("b1", 500, &[("zone", "b")]),
        node("b2", 400, &[("zone", "b")]),
        node("b3", 300, &[("zone", "b")]),
        node("a2", 200, &[("zone", "a")]),
    ];
    let p = Placement {
        replicas_on_same: vec!["zone".to_owned()],
        ..Placement::default()
    };
    // Zone a has the best node but only two nodes: the search backtracks to zone b.
    let plan = place(&nodes, &req(Count::Total(3), &p, &[])).unwrap();
    assert_eq!(names(&plan), ["b1", "b2", "b3"]);
    // A fixed value.
    let fixed = Placement {
        replicas_on_same: vec!["zone=a".to_owned()],
        ..Placement::default()
    };
    assert_eq!(
        names(&place(&nodes, &req(Count::Total(2), &fixed, &[])).unwrap()),
        ["a1", "a2"]
    );
    let err = place(&nodes, &req(Count::Total(4), &p, &[])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot place 4 more diskful replica(s) of r0: replicas-on-same Aux/zone: no value is shared by 4 qualifying nodes [a: a1, a2; b: b1, b2, b3]"
    );
}

#[test]
fn replicas_on_different_spreads_over_zones() {
    let nodes = [
        node("a1", 990, &[("zone", "a")]),
        node("a2", 980, &[("zone", "a")]),
        node("b1", 500, &[("zone", "b")]),
        node("c1", 100, &[("zone", "c")]),
        node("x1", 999, &[]),
    ];
    let p = Placement {
        replicas_on_different: vec!["zone".to_owned()],
        ..Placement::default()
    };
    let plan = place(&nodes, &req(Count::Total(3), &p, &[])).unwrap();
    assert_eq!(names(&plan), ["a1", "b1", "c1"]);
    let err = place(&nodes, &req(Count::Total(4), &p, &[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("replicas-on-different Aux/zone: only 3 unused distinct value(s)"),
        "{err}"
    );
    assert!(
        err.contains("x1: has no Aux/zone (replicas-on-different)"),
        "{err}"
    );
}

#[test]
fn additional_replicas_are_seeded_by_the_existing_ones() {
    let nodes = [
        node("a1", 990, &[("zone", "a")]),
        node("a2", 980, &[("zone", "a")]),
        node("b1", 500, &[("zone", "b")]),
        node("c1", 100, &[("zone", "c")]),
    ];
    let p = Placement {
        replicas_on_different: vec!["zone".to_owned()],
        ..Placement::default()
    };
    let existing = [Existing {
        node: "a1".to_owned(),
        diskful: true,
    }];
    // +1 next to a replica in zone a: a2 is skipped although it has more free space.
    let plan = place(&nodes, &req(Count::Additional(1), &p, &existing)).unwrap();
    assert_eq!(names(&plan), ["b1"]);
    // With two diskful replicas in total, a tiebreaker is added.
    assert_eq!(plan.diskless.len(), 1);
    assert!(plan.diskless[0].tiebreaker);
    // auto-place 1 when one exists: nothing to do.
    assert_eq!(
        place(&nodes, &req(Count::Total(1), &p, &existing)).unwrap(),
        Plan::default()
    );
}

#[test]
fn do_not_place_with_and_diskless_on_remaining() {
    let mut nodes = vec![
        node("n1", 900, &[]),
        node("n2", 800, &[]),
        node("n3", 700, &[]),
        node("n4", 600, &[]),
    ];
    nodes[0].resources.insert("db".to_owned());
    let p = Placement {
        do_not_place_with: vec!["db".to_owned()],
        diskless_on_remaining: Some(true),
        ..Placement::default()
    };
    let plan = place(&nodes, &req(Count::Total(2), &p, &[])).unwrap();
    assert_eq!(names(&plan), ["n2", "n3"]);
    // n1 hosts db, so it gets no diskless replica either; no tiebreaker flag on remaining ones.
    assert_eq!(
        plan.diskless,
        [DisklessChoice {
            node: "n4".to_owned(),
            tiebreaker: false
        }]
    );
    let err = place(&nodes, &req(Count::Total(4), &p, &[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("n1: hosts db (do-not-place-with)"), "{err}");
}

#[test]
fn excluded_nodes_and_node_types() {
    let mut nodes = vec![node("n1", 900, &[]), node("n2", 800, &[]), node("n3", 700, &[])];
    nodes[0].excluded = Some("EVICTED".to_owned());
    nodes[1].hosts_resources = false;
    let p = Placement::default();
    let err = place(&nodes, &req(Count::Total(2), &p, &[])).unwrap_err();
    let PlacementError::NotEnoughNodes { rejected, .. } = err else {
        panic!()
    };
    assert_eq!(rejected["n1"], ["EVICTED"]);
    assert_eq!(rejected["n2"], ["its node type does not host resources"]);
}

#[test]
fn unknown_capacity_and_diskless_pools() {
    let mut nodes = vec![node("n1", 900, &[]), node("n2", 800, &[])];
    nodes[0].pools[0].free = None;
    nodes[1].pools[0].driver = Driver::Diskless;
    let p = Placement::default();
    let err = place(&nodes, &req(Count::Total(1), &p, &[])).unwrap_err();
    let PlacementError::NotEnoughNodes { rejected, .. } = err else {
        panic!()
    };
    assert_eq!(rejected["n1"], ["pool pool1 has not reported its capacity"]);
    assert_eq!(rejected["n2"], ["has no diskful storage pool"]);
}
