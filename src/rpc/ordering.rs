//! Which requests of one connection wait for which. A method table declares, per method, the params field whose
//! value orders it (keel's session methods: `sessionId`); requests naming the same value run in arrival order,
//! everything else concurrently. The connection layer reads only that field, never guesses.

use std::collections::HashMap;

use serde_json::Value;

#[derive(Debug, Clone, Default)]
pub struct RequestOrder(HashMap<String, &'static str>);

impl RequestOrder {
    pub fn insert(&mut self, method: &str, field: &'static str) {
        self.0.insert(method.to_owned(), field);
    }

    /// The key this request is ordered by, if its method declares one and its params carry it.
    pub fn key(&self, method: &str, params: Option<&Value>) -> Option<String> {
        let field = self.0.get(method)?;
        let value = params?.get(*field)?.as_str()?;
        Some(format!("{field}={value}"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_declared_methods_with_their_field_are_ordered() {
        let mut order = RequestOrder::default();
        order.insert("session/get", "sessionId");
        let params = json!({ "sessionId": "s1", "other": "x" });
        assert_eq!(order.key("session/get", Some(&params)), Some("sessionId=s1".into()));
        assert_eq!(order.key("session/list", Some(&params)), None, "an undeclared method never waits");
        assert_eq!(order.key("session/get", Some(&json!({ "sessionId": 7 }))), None);
        assert_eq!(order.key("session/get", None), None);
    }
}
