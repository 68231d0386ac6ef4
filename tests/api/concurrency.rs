use crate::helpers::*;

/// Fifty browsers finish the first login of the same new person at the same moment: the
/// identities primary key plus retry (not timing luck) leaves exactly one account.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_simultaneous_first_logins_of_one_subject_create_exactly_one_account() {
    const N: usize = 50;
    let app = spawn_app().await;
    let mut ready = Vec::new();
    for _ in 0..N {
        let b = Browser::new();
        let cb = app.login_until_callback(&b, "alice", "/").await;
        ready.push((b, cb));
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(N));
    let tasks: Vec<_> = ready
        .into_iter()
        .map(|(b, cb)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                b.get(&cb).await.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == 302),
        "every login succeeds: {statuses:?}"
    );
    assert_eq!(app.account_count().await, 1);
    let created = app
        .audit_events()
        .await
        .iter()
        .filter(|e| e.action == "account.created")
        .count();
    assert_eq!(created, 1);
}
