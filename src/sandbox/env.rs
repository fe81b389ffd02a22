//! The environment of child processes, like codex's `shell_environment_policy`: inherit all, a core set or
//! nothing, then include and exclude by name pattern, then `set`. Credentials never pass: a variable whose name
//! says it is one, or whose value is a known secret, is dropped whatever the patterns say.

use std::collections::BTreeMap;
use std::ffi::OsString;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::permission::rules::matches;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Inherit {
    #[default]
    All,
    /// `HOME`, `PATH`, `USER`, `SHELL`, `TERM`, `LANG`, `LC_*`, `TMPDIR`, `TZ` and a few more.
    Core,
    None,
}

/// `shellEnvironment` in config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvPolicy {
    #[serde(default)]
    pub inherit: Inherit,
    /// Name patterns (`*` wildcards) kept even when `inherit` would drop them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Name patterns dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Variables set for every command, after everything else.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
}

const CORE: &[&str] = &[
    "HOME",
    "PATH",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TMPDIR",
    "TZ",
    "PWD",
    "COLORTERM",
];

impl EnvPolicy {
    pub fn child_environment(&self, parent: impl Iterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
        let mut out: Vec<(OsString, OsString)> = parent
            .filter(|(name, value)| {
                let Some(name) = name.to_str() else { return false };
                let inherited = match self.inherit {
                    Inherit::All => true,
                    Inherit::Core => CORE.iter().any(|p| matches(p, name)),
                    Inherit::None => false,
                };
                let kept = (inherited || self.include.iter().any(|p| matches(p, name)))
                    && !self.exclude.iter().any(|p| matches(p, name));
                kept && !is_credential(name, value)
            })
            .collect();
        out.extend(self.set.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));
        out
    }
}

fn is_credential(name: &str, value: &OsString) -> bool {
    crate::secret::is_secret_name(name)
        || value.to_str().is_some_and(|v| matches!(crate::secret::scrub(v), std::borrow::Cow::Owned(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(policy: &EnvPolicy, parent: &[(&str, &str)]) -> Vec<String> {
        let parent = parent.iter().map(|(k, v)| (OsString::from(k), OsString::from(v)));
        policy.child_environment(parent).into_iter().map(|(k, _)| k.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn credentials_never_pass_whatever_the_patterns() {
        let parent = [("PATH", "/bin"), ("OPENAI_API_KEY", "sk-1"), ("GH_TOKEN", "x"), ("EDITOR", "vi")];
        let all = EnvPolicy::default();
        assert_eq!(names(&all, &parent), ["PATH", "EDITOR"]);
        let core = EnvPolicy { inherit: Inherit::Core, include: vec!["*".into()], ..Default::default() };
        assert_eq!(names(&core, &parent), ["PATH", "EDITOR"]);
        let none = EnvPolicy {
            inherit: Inherit::None,
            include: vec!["ED*".into()],
            set: [("CI".to_owned(), "1".to_owned())].into(),
            ..Default::default()
        };
        assert_eq!(names(&none, &parent), ["EDITOR", "CI"]);
        let excluded = EnvPolicy { exclude: vec!["ED*".into()], ..Default::default() };
        assert_eq!(names(&excluded, &parent), ["PATH"]);
    }
}
