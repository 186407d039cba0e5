//! The QueueProcessor operations both faces share, on a real database and Redis.

use crate::common;

use common::{Store, TestServer, sql};
use janitor_runner::models::{ActiveRun, BackchannelInfo, QueueItem, VcsInfo};
use janitor_runner::registry;

fn active_gauge(server: &TestServer, worker: &str) -> f64 {
    server
        .state
        .metrics
        .active_runs
        .with_label_values(&[worker])
        .get()
}

async fn registering_and_unclaiming_keep_the_worker_gauge_and_the_claim(store: Store) {
    let server = TestServer::start(store).await;
    sql(
        &server,
        "INSERT INTO codebase (name) VALUES ('alpha');
         INSERT INTO queue (id, codebase, suite, command) VALUES (7, 'alpha', 'lintian-fixes', 'x');",
    )
    .await;
    let item = QueueItem {
        id: 7,
        context: None,
        command: "x".into(),
        estimated_duration: None,
        campaign: "lintian-fixes".into(),
        refresh: false,
        requester: None,
        change_set: None,
        codebase: "alpha".into(),
    };
    let now = server.clock_now();
    let run = |id: &str| {
        ActiveRun::from_queue_item(
            &item,
            id.to_string(),
            now,
            VcsInfo::default(),
            BackchannelInfo::None,
            Some("worker-7".into()),
            None,
        )
    };
    let state = &server.state;
    registry::register_run(state, &run("run-a"), now)
        .await
        .unwrap();
    assert_eq!(active_gauge(&server, "worker-7"), 1.0, "{store:?}");
    let rival = registry::register_run(state, &run("run-b"), now).await;
    assert!(
        matches!(
            rival,
            Err(janitor_runner::Error::Store(
                janitor_runner::state::StoreError::AlreadyClaimed { queue_id: 7, .. }
            ))
        ),
        "{store:?}: {rival:?}"
    );
    let (next, _) = registry::next_queue_item(state, None, None, now)
        .await
        .unwrap()
        .map_or((None, None), |(item, vcs)| (Some(item.id), Some(vcs)));
    assert_eq!(
        next, None,
        "{store:?}: the claimed item is not handed out again"
    );
    registry::unclaim_run(state, "run-a").await.unwrap();
    assert_eq!(active_gauge(&server, "worker-7"), 0.0, "{store:?}");
    registry::unclaim_run(state, "unknown").await.unwrap();
    assert_eq!(active_gauge(&server, "worker-7"), 0.0, "{store:?}");
    let (next, _) = registry::next_queue_item(state, None, None, now)
        .await
        .unwrap()
        .map_or((None, None), |(item, vcs)| (Some(item.id), Some(vcs)));
    assert_eq!(next, Some(7), "{store:?}: released again");
    server.stop().await;
}

per_store!(registering_and_unclaiming_keep_the_worker_gauge_and_the_claim, postgres => Store::Postgres, redis => Store::Redis);
