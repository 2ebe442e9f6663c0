//! A node refuses a setup that would hurt, and never runs on half-dead: a
//! panic in any task stops it with a failure exit so its supervisor
//! restarts it.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_task_stops_the_node_with_a_failure_exit() {
    let mut env = Env::new();
    let city = City::start(&env);
    env.node_env.push(("WARDSYNC_MUTATION".into(), "replicator-panics".into()));
    let mut ward = Ward::start(&env, "00082", city.addr);
    // The replication task panics once the city welcomes the ward; before
    // the fix the agent went on serving its API with replication dead.
    let status = ward.node.exited();
    assert_eq!(status.code(), Some(wardsync::cli::PANIC_EXIT), "{status}");
    let log = ward.node.log();
    assert!(log.contains("a task panicked: stopping the process"), "{log}");
}
