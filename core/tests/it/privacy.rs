//! Call metadata is limited and purged after the retention period.

use axum::http::StatusCode;
use chrono::Duration;
use confab_core::privacy::{self, CallEventKind};

use crate::support::{TestApp, enc, on_both_databases};

on_both_databases!(
    join_requests_are_logged_without_content,
    metadata_is_purged_after_thirty_days
);

async fn join_requests_are_logged_without_content(app: TestApp) {
    let token = app.admin_token().await;
    let link = app.create_link(&token, "Standup").await;
    let id = link["id"].as_str().unwrap();
    let page = app.get(&format!("/j/{id}")).send().await;
    let csrf = page.cookie("confab_csrf").unwrap();
    let res = app
        .post(&format!("/j/{id}"))
        .cookie(&format!("confab_csrf={csrf}"))
        .form(&format!("csrf={csrf}&name={}", enc("Ada")))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::ACCEPTED);
    let events = app.store.call_events(id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "join_requested");
    assert_eq!(events[0].subject.as_deref(), Some("Ada"));
    assert_eq!(events[0].at, app.clock_now());
}

async fn metadata_is_purged_after_thirty_days(app: TestApp) {
    let t0 = app.clock_now();
    privacy::record(&app.store, "LinkOld", CallEventKind::CallStarted, None, t0)
        .await
        .unwrap();
    privacy::record(
        &app.store,
        "LinkNew",
        CallEventKind::Invited,
        Some("bob@example.org"),
        t0 + Duration::days(10),
    )
    .await
    .unwrap();

    // 29 days later nothing is old enough.
    let report = privacy::purge(&app.store, t0 + Duration::days(29), 30)
        .await
        .unwrap();
    assert_eq!(report.call_events, 0);
    assert_eq!(app.store.call_events("LinkOld").await.unwrap().len(), 1);

    // Just past 30 days the first record goes, the later one stays.
    let report = privacy::purge(
        &app.store,
        t0 + Duration::days(30) + Duration::seconds(1),
        30,
    )
    .await
    .unwrap();
    assert_eq!(report.call_events, 1);
    assert!(app.store.call_events("LinkOld").await.unwrap().is_empty());
    assert_eq!(app.store.call_events("LinkNew").await.unwrap().len(), 1);

    // A shorter configured retention purges sooner.
    let report = privacy::purge(&app.store, t0 + Duration::days(18), 7)
        .await
        .unwrap();
    assert_eq!(report.call_events, 1);
    assert!(app.store.call_events("LinkNew").await.unwrap().is_empty());
}

#[tokio::test]
async fn the_background_job_purges_and_stops_on_shutdown() {
    let app = TestApp::sqlite().await;
    let t0 = app.clock_now();
    privacy::record(&app.store, "LinkOld", CallEventKind::CallEnded, None, t0)
        .await
        .unwrap();
    app.clock.advance(Duration::days(31));
    let (trigger, shutdown) = confab_core::shutdown::Shutdown::new();
    let job = tokio::spawn(privacy::run_purge_job(
        app.store.clone(),
        std::sync::Arc::new(app.clock.clone()),
        30,
        std::time::Duration::from_millis(20),
        None,
        shutdown,
    ));
    let mut purged = false;
    for _ in 0..250 {
        if app.store.call_events("LinkOld").await.unwrap().is_empty() {
            purged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(purged, "the job purged the expired record");
    trigger.trigger();
    tokio::time::timeout(std::time::Duration::from_secs(10), job)
        .await
        .expect("the job stops on shutdown")
        .unwrap();
}
