//! Runner behaviour in process: the engine as a library playing a script, each case one prompt and the event log it
//! leaves (see `harness`). `UPDATE_EXPECT=1 cargo test --test runner` rewrites the snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use expect_test::expect;
use harness::{Case, Harness, check};
use serde_json::json;

#[tokio::test]
async fn a_text_reply_completes_the_activity() {
    check(
        json!({ "turns": [{ "text": "Hello there.", "usage": { "input": 10, "output": 3 } }] }),
        expect![[r#"
             1 session.created agent=build
             2 input.admitted inp1 queue started
             3 activity.opened act2 queue
             4 input.promoted [inp1] -> msg3
             5 session.status running
             6 turn.started turn4 play/script
             7 turn.dispatched turn4 attempt=1
             8 text.completed "Hello there."
             9 turn.completed turn4 stop
            10 activity.closed act2 completed
            11 session.status idle
            => completed
        "#]],
    )
    .await;
}

#[tokio::test]
async fn a_tool_call_runs_and_the_model_continues() {
    let todo = json!({ "todos": [{ "content": "write tests", "status": "in_progress" }] });
    check(
        json!({ "turns": [
            { "text": "On it.", "toolCalls": [{ "id": "c1", "name": "todowrite", "input": todo }] },
            { "text": "Done." },
        ] }),
        expect![[r#"
             1 session.created agent=build
             2 input.admitted inp1 queue started
             3 activity.opened act2 queue
             4 input.promoted [inp1] -> msg3
             5 session.status running
             6 turn.started turn4 play/script
             7 turn.dispatched turn4 attempt=1
             8 text.completed "On it."
             9 tool.called call6 (c1) todowrite {"todos":[{"content":"write tests","status":"in_progress"}]}
            10 turn.streamed turn4 tool_calls
            11 tool.started call6
            12 tool.completed call6 "0/1 done"
            13 turn.completed turn4 tool_calls
            14 turn.started turn7 play/script
            15 turn.dispatched turn7 attempt=1
            16 text.completed "Done."
            17 turn.completed turn7 stop
            18 activity.closed act2 completed
            19 session.status idle
            => completed
        "#]],
    )
    .await;
}

#[tokio::test]
async fn an_approved_write_waits_for_its_answer_then_runs() {
    check(
        json!({
            "approve": "once",
            "turns": [
                { "toolCalls": [{ "id": "w1", "name": "write", "input": { "filePath": "a.txt", "content": "x" } }] },
                { "text": "Written." },
            ],
        }),
        expect![[r#"
             1 session.created agent=build
             2 input.admitted inp1 queue started
             3 activity.opened act2 queue
             4 input.promoted [inp1] -> msg3
             5 session.status running
             6 turn.started turn4 play/script
             7 turn.dispatched turn4 attempt=1
             8 tool.called call6 (w1) write {"content":"x","filePath":"a.txt"}
             9 turn.streamed turn4 tool_calls
            10 approval.requested apr7 call6 edit ["a.txt"]
            11 session.status waiting_approval
            12 approval.resolved apr7 once by=check
            13 session.status running
            14 tool.started call6
            15 tool.completed call6 "Created a.txt (1 bytes)"
            16 turn.completed turn4 tool_calls
            17 turn.started turn8 play/script
            18 turn.dispatched turn8 attempt=1
            19 text.completed "Written."
            20 turn.completed turn8 stop
            21 activity.closed act2 completed
            22 session.status idle
            => completed
        "#]],
    )
    .await;
}

#[tokio::test]
async fn a_rejected_call_fails_with_the_reason_and_the_model_sees_it() {
    check(
        json!({
            "approve": "reject",
            "turns": [
                { "toolCalls": [{ "id": "b1", "name": "bash", "input": { "command": "rm -rf build" } }] },
                { "text": "Understood." },
            ],
        }),
        expect![[r#"
             1 session.created agent=build
             2 input.admitted inp1 queue started
             3 activity.opened act2 queue
             4 input.promoted [inp1] -> msg3
             5 session.status running
             6 turn.started turn4 play/script
             7 turn.dispatched turn4 attempt=1
             8 tool.called call6 (b1) bash {"command":"rm -rf build"}
             9 turn.streamed turn4 tool_calls
            10 approval.requested apr7 call6 bash ["rm -rf build"]
            11 session.status waiting_approval
            12 approval.resolved apr7 reject by=check
            13 session.status running
            14 tool.failed call6 "the user rejected this call"
            15 turn.completed turn4 tool_calls
            16 turn.started turn8 play/script
            17 turn.dispatched turn8 attempt=1
            18 text.completed "Understood."
            19 turn.completed turn8 stop
            20 activity.closed act2 completed
            21 session.status idle
            => completed
        "#]],
    )
    .await;
}

#[tokio::test]
async fn a_steer_joins_the_activity_at_the_next_turn() {
    check(
        json!({
            "steer": "also this",
            "turns": [{ "text": "First.", "delayMs": 400 }, { "text": "Second, with the steer." }],
        }),
        expect![[r#"
             1 session.created agent=build
             2 input.admitted inp1 queue started
             3 activity.opened act2 queue
             4 input.promoted [inp1] -> msg3
             5 session.status running
             6 turn.started turn4 play/script
             7 turn.dispatched turn4 attempt=1
             8 input.admitted inp5 steer steered
             9 text.completed "First."
            10 turn.completed turn4 stop
            11 input.promoted [inp5] -> msg6
            12 turn.started turn7 play/script
            13 turn.dispatched turn7 attempt=1
            14 text.completed "Second, with the steer."
            15 turn.completed turn7 stop
            16 activity.closed act2 completed
            17 session.status idle
            => completed
        "#]],
    )
    .await;
}

#[tokio::test]
async fn a_transient_failure_is_retried_before_anything_streams() {
    check(
        json!({ "turns": [{ "error": { "status": 503, "message": "overloaded" } }, { "text": "Back." }] }),
        expect![[r#"
             1 session.created agent=build
             2 input.admitted inp1 queue started
             3 activity.opened act2 queue
             4 input.promoted [inp1] -> msg3
             5 session.status running
             6 turn.started turn4 play/script
             7 turn.dispatched turn4 attempt=1
             8 retry.scheduled turn4 attempt=1 server_error
             9 session.status retrying
            10 session.status running
            11 turn.dispatched turn4 attempt=2
            12 text.completed "Back."
            13 turn.completed turn4 stop
            14 activity.closed act2 completed
            15 session.status idle
            => completed
        "#]],
    )
    .await;
}

#[tokio::test]
async fn an_unauthorized_provider_fails_the_activity() {
    check(
        json!({ "turns": [{ "error": { "status": 401, "message": "bad key" } }] }),
        expect![[r#"
             1 session.created agent=build
             2 input.admitted inp1 queue started
             3 activity.opened act2 queue
             4 input.promoted [inp1] -> msg3
             5 session.status running
             6 turn.started turn4 play/script
             7 turn.dispatched turn4 attempt=1
             8 turn.failed turn4 unauthorized retryable=false
             9 activity.closed act2 failed "the provider rejected the credentials (401): bad key"
            10 session.status failed
            => failed
        "#]],
    )
    .await;
}

#[tokio::test]
async fn the_step_limit_closes_the_activity() {
    let call = |id: &str| json!({ "toolCalls": [{ "id": id, "name": "list", "input": {} }] });
    check(
        json!({
            "config": { "agents": { "build": { "steps": 2 } } },
            "turns": [call("l1"), call("l2"), { "text": "never" }],
        }),
        expect![[r#"
             1 session.created agent=build
             2 input.admitted inp1 queue started
             3 activity.opened act2 queue
             4 input.promoted [inp1] -> msg3
             5 session.status running
             6 turn.started turn4 play/script
             7 turn.dispatched turn4 attempt=1
             8 tool.called call6 (l1) list {}
             9 turn.streamed turn4 tool_calls
            10 tool.started call6
            11 tool.completed call6 "./"
            12 turn.completed turn4 tool_calls
            13 turn.started turn7 play/script
            14 turn.dispatched turn7 attempt=1
            15 tool.called call9 (l2) list {}
            16 turn.streamed turn7 tool_calls
            17 tool.started call9
            18 tool.completed call9 "./"
            19 turn.completed turn7 tool_calls
            20 activity.closed act2 turn_limit "stopped after 2 provider turns"
            21 session.status idle
            => turn_limit
        "#]],
    )
    .await;
}

#[tokio::test]
async fn the_transcript_pages_by_whole_messages() {
    let todo = json!({ "todos": [{ "content": "page", "status": "pending" }] });
    let case: Case = serde_json::from_value(json!({ "turns": [
        { "text": "On it.", "toolCalls": [{ "id": "c1", "name": "todowrite", "input": todo }] },
        { "text": "Done." },
    ] }))
    .unwrap();
    let harness = Harness::new(&case);
    let (session, _) = harness.run(&case).await;
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = harness.engine.messages(&session, after, 1).unwrap();
        let parts: Vec<String> =
            page.messages[0].parts.iter().map(|p| serde_json::to_value(p).unwrap()["type"].to_string()).collect();
        pages.push(format!(
            "{:?} seq={} [{}] next={:?}",
            page.messages[0].role,
            page.messages[0].seq,
            parts.join(", "),
            page.next
        ));
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    expect![[r#"
        User seq=4 ["text"] next=Some(4)
        Assistant seq=8 ["text", "tool"] next=Some(9)
        Assistant seq=16 ["text"] next=None"#]]
    .assert_eq(&pages.join("\n"));
}

#[tokio::test]
async fn an_interrupt_stops_the_turn_and_pauses_the_queue() {
    check(
        json!({ "interrupt": true, "turns": [{ "text": "never seen", "delayMs": 5000 }] }),
        expect![[r#"
             1 session.created agent=build
             2 input.admitted inp1 queue started
             3 activity.opened act2 queue
             4 input.promoted [inp1] -> msg3
             5 session.status running
             6 turn.started turn4 play/script
             7 turn.dispatched turn4 attempt=1
             8 queue.paused
             9 turn.failed turn4 interrupted retryable=false
            10 activity.closed act2 interrupted
            11 session.status idle
            => interrupted
        "#]],
    )
    .await;
}

#[tokio::test]
async fn an_overflow_compacts_the_context_and_runs_the_step_again() {
    let todo = json!({ "todos": [{ "content": "write tests", "status": "in_progress" }] });
    let overflow = json!({ "status": 400, "message": "prompt is too long: 210000 tokens > 200000 maximum" });
    check(
        json!({ "turns": [
            { "text": "On it.", "toolCalls": [{ "id": "c1", "name": "todowrite", "input": todo }] },
            { "error": overflow },
            { "text": "## Goal\nwrite tests" },
            { "text": "Done." },
        ] }),
        expect![[r###"
             1 session.created agent=build
             2 input.admitted inp1 queue started
             3 activity.opened act2 queue
             4 input.promoted [inp1] -> msg3
             5 session.status running
             6 turn.started turn4 play/script
             7 turn.dispatched turn4 attempt=1
             8 text.completed "On it."
             9 tool.called call6 (c1) todowrite {"todos":[{"content":"write tests","status":"in_progress"}]}
            10 turn.streamed turn4 tool_calls
            11 tool.started call6
            12 tool.completed call6 "0/1 done"
            13 turn.completed turn4 tool_calls
            14 turn.started turn7 play/script
            15 turn.dispatched turn7 attempt=1
            16 turn.failed turn7 context_overflow retryable=true
            17 compaction.started cmp8 overflow
            18 compaction.completed cmp8 pruned=[] summary="## Goal"
            19 turn.started turn9 play/script
            20 turn.dispatched turn9 attempt=1
            21 text.completed "Done."
            22 turn.completed turn9 stop
            23 activity.closed act2 completed
            24 session.status idle
            => completed
        "###]],
    )
    .await;
}

#[tokio::test]
async fn an_overflow_with_nothing_older_to_summarise_fails_the_activity() {
    let overflow = json!({ "status": 400, "message": "prompt is too long: 210000 tokens > 200000 maximum" });
    check(json!({ "turns": [{ "error": overflow }] }), expect![[r#"
         1 session.created agent=build
         2 input.admitted inp1 queue started
         3 activity.opened act2 queue
         4 input.promoted [inp1] -> msg3
         5 session.status running
         6 turn.started turn4 play/script
         7 turn.dispatched turn4 attempt=1
         8 turn.failed turn4 context_overflow retryable=true
         9 compaction.started cmp5 overflow
        10 compaction.failed cmp5 "nothing to compact: the latest message alone does not fit the model's context window"
        11 activity.closed act2 failed "the conversation is too long for the model's context window: prompt is too long: 210000 tokens > 200000 maximum; compaction failed: nothing to compact: the latest message alone does not fit the model's context window"
        12 session.status failed
        => failed
    "#]]).await;
}
