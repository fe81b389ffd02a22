//! Permissions: which tool calls run, which ask, which are refused.
//!
//! A tool describes what a call touches as `Access`es (an action and the resources it touches: paths, commands).
//! Every resource is checked against the rules (defaults, then config, then the project's stored `always` rules;
//! the last match wins, no match asks). The strictest answer of all of them is the call's.

pub mod bash;
pub mod rules;

use crate::config::{Effect, PermissionRule};

/// What a tool call touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub action: &'static str,
    pub resources: Vec<String>,
}

/// The outcome for a call: run it, ask about these (action, resources), or refuse with the rule that did.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow,
    Ask { action: String, resources: Vec<String> },
    Deny { action: String, resource: String },
}

pub fn check(rules: &[PermissionRule], accesses: &[Access]) -> Verdict {
    let mut ask: Option<(String, Vec<String>)> = None;
    for access in accesses {
        for resource in &access.resources {
            match rules::evaluate(rules, access.action, resource) {
                Effect::Deny => return Verdict::Deny { action: access.action.into(), resource: resource.clone() },
                Effect::Ask => {
                    let entry = ask.get_or_insert_with(|| (access.action.to_owned(), Vec::new()));
                    // One approval per call: it names the first action that asks and every resource of that action
                    // that does, so that an `always` answer stores rules of that action only; answering it covers
                    // the call's other asks too.
                    if entry.0 == access.action && !entry.1.contains(resource) {
                        entry.1.push(resource.clone());
                    }
                }
                Effect::Allow => {}
            }
        }
    }
    match ask {
        Some((action, resources)) => Verdict::Ask { action, resources },
        None => Verdict::Allow,
    }
}

/// The rules in force for a session: defaults, config, the project's stored allow rules, then the secret guards.
pub fn rules_for(config_rules: &[PermissionRule], project_rules: Vec<(String, String)>) -> Vec<PermissionRule> {
    rules_with_agent(config_rules, project_rules, &[])
}

/// `rules_for` with the running agent's rules after all others, so that an "always" answered under `build` does not
/// open edits to `plan`.
pub fn rules_with_agent(
    config_rules: &[PermissionRule],
    project_rules: Vec<(String, String)>,
    agent_rules: &[PermissionRule],
) -> Vec<PermissionRule> {
    let mut rules = rules::defaults();
    rules.extend(config_rules.iter().cloned());
    rules.extend(project_rules.into_iter().map(|(action, pattern)| PermissionRule {
        action,
        pattern,
        effect: Effect::Allow,
    }));
    rules.extend(agent_rules.iter().cloned());
    let guards = rules::guards(&rules);
    rules.extend(guards);
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictest_answer_wins() {
        let rules = rules::defaults();
        let bash = |cmds: &[&str]| Access { action: "bash", resources: cmds.iter().map(|s| s.to_string()).collect() };
        assert_eq!(check(&rules, &[bash(&["git status", "ls -la"])]), Verdict::Allow);
        assert_eq!(
            check(&rules, &[bash(&["git status", "rm x", "curl y"])]),
            Verdict::Ask { action: "bash".into(), resources: vec!["rm x".into(), "curl y".into()] }
        );
        let mut strict = rules.clone();
        strict.push(PermissionRule { action: "bash".into(), pattern: "curl *".into(), effect: Effect::Deny });
        assert_eq!(
            check(&strict, &[bash(&["rm x", "curl y"])]),
            Verdict::Deny { action: "bash".into(), resource: "curl y".into() }
        );
    }
}
