//! jsonrpsee's own async client, typed by the protocol crate, drives the engine over its stdio.
//! Proves that an off-the-shelf JSON-RPC client (not our harness) interoperates, notifications included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use jsonrpsee::core::client::{
    ClientBuilder, ClientT, Error as ClientError, ReceivedMessage, SubscriptionClientT, TransportReceiverT,
    TransportSenderT,
};
use jsonrpsee::core::params::ObjectParams;
use keel_protocol::Method;
use keel_protocol::Notification;
use keel_protocol::event::{EventNotificationParams, SessionEvent, SessionSubscribe, SubscribeParams};
use keel_protocol::initialize::{ClientCapabilities, ClientInfo, Initialize, InitializeParams};
use keel_protocol::session::{
    SessionCreate, SessionCreateParams, SessionGet, SessionIdParams, SessionUpdate, SessionUpdateParams,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

struct Sender(ChildStdin);
struct Receiver(BufReader<ChildStdout>);

impl TransportSenderT for Sender {
    type Error = TransportError;
    async fn send(&mut self, msg: String) -> Result<(), Self::Error> {
        self.0.write_all(format!("{msg}\n").as_bytes()).await.map_err(|e| TransportError(e.to_string()))?;
        self.0.flush().await.map_err(|e| TransportError(e.to_string()))
    }
}

impl TransportReceiverT for Receiver {
    type Error = TransportError;
    async fn receive(&mut self) -> Result<ReceivedMessage, Self::Error> {
        let mut line = String::new();
        match self.0.read_line(&mut line).await {
            Ok(0) => Err(TransportError("closed".into())),
            Ok(_) => Ok(ReceivedMessage::Text(line)),
            Err(e) => Err(TransportError(e.to_string())),
        }
    }
}

/// A typed call: the method's name and types come from the protocol crate; params go as one object.
async fn call<M: Method>(
    client: &jsonrpsee::core::client::Client,
    params: M::Params,
) -> Result<M::Result, ClientError> {
    let mut object = ObjectParams::new();
    if let serde_json::Value::Object(map) = serde_json::to_value(params).unwrap() {
        for (k, v) in map {
            object.insert(&k, v).unwrap();
        }
    }
    client.request(M::NAME, object).await
}

#[tokio::test]
async fn jsonrpsee_client_drives_sessions_and_receives_events() {
    let home = common::Home::new();
    let mut child =
        common::keel_command(home.path()).arg("serve").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let sender = Sender(child.stdin.take().unwrap());
    let receiver = Receiver(BufReader::new(child.stdout.take().unwrap()));
    let client = ClientBuilder::default().request_timeout(Duration::from_secs(15)).build_with_tokio(sender, receiver);

    let init = call::<Initialize>(
        &client,
        InitializeParams {
            protocol_version: 1,
            client_info: ClientInfo { name: "jsonrpsee".into(), version: None },
            capabilities: ClientCapabilities::default(),
            auth_token: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(init.server_info.name, "keel");

    let created = call::<SessionCreate>(
        &client,
        SessionCreateParams {
            cwd: home.workspace(),
            title: Some("typed".into()),
            agent: None,
            model: None,
            parent_id: None,
        },
    )
    .await
    .unwrap();
    let id = created.session.id;

    let mut events = client.subscribe_to_method::<EventNotificationParams>(SessionEvent::NAME).await.unwrap();
    call::<SessionSubscribe>(
        &client,
        SubscribeParams { session_id: id.clone(), after_seq: 0, include_children: false },
    )
    .await
    .unwrap();
    call::<SessionUpdate>(
        &client,
        SessionUpdateParams {
            session_id: id.clone(),
            title: Some("renamed".into()),
            agent: None,
            model: None,
            reasoning_effort: None,
        },
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let n = tokio::time::timeout(common::WAIT, events.next()).await.unwrap().unwrap().unwrap();
        seen.push((n.event.seq, n.event.kind));
    }
    assert_eq!(seen, [(1, "session.created".to_owned()), (2, "session.updated".to_owned())]);

    match call::<SessionGet>(&client, SessionIdParams { session_id: "ses_missing".into() }).await {
        Err(ClientError::Call(e)) => assert_eq!(e.code(), -32010),
        other => panic!("expected -32010, got {other:?}"),
    }
}
