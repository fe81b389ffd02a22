//! Which ACP requests wait for which: those naming the same session run in arrival order (a prompt releases its
//! place once admitted, so that cancels and config changes never wait behind a whole activity).

use crate::rpc::RequestOrder;

pub fn ordering() -> RequestOrder {
    let mut ordering = RequestOrder::default();
    for method in [
        "session/load",
        "session/resume",
        "session/close",
        "session/prompt",
        "session/set_config_option",
        "session/set_mode",
        "_keel/steer",
    ] {
        ordering.insert(method, "sessionId");
    }
    ordering
}
