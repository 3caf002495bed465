//! docs/operations.md cannot rot: every `grpcurl` and `fanfare ctl` command in its ```sh
//! blocks runs, top to bottom, against one fresh `fanfare dev` on free ports, and must
//! succeed.
//!
//! The page's recipes are written for `make run` (127.0.0.1:50051, 50052, 50053); the
//! addresses are rewritten to the test's ports. Recipes that name fixed ids (group 1,
//! job 1) rely on their order, as a reader running them on a fresh `make run` does. Commands
//! that run until Ctrl-C are bounded here: the `Subscribe` recipe gets a grpcurl
//! `-max-time` (its deadline exit is accepted once it printed a heartbeat), `fanfare ctl
//! tail` a `--timeout`, and a watched job a `--timeout` within which it must succeed.
//! Other lines (kubectl, curl) are not run.

#[allow(dead_code, reason = "only DevServer is used here")]
mod support;

use std::process::{Command, Output};

use support::DevServer;

/// The page under test.
const RUNBOOK: &str = include_str!("../../../docs/operations.md");
/// The `make run` addresses the recipes use.
const DEV_GROUPS: &str = "127.0.0.1:50051";
const DEV_MESSAGES: &str = "127.0.0.1:50052";
const DEV_FANOUT: &str = "127.0.0.1:50053";
/// grpcurl's exit status for an RPC that failed with DEADLINE_EXCEEDED (64 + the code).
const GRPCURL_DEADLINE_EXCEEDED: i32 = 64 + 4;

/// One command of a ```sh block: its words, and the line of the page it starts on.
#[derive(Debug)]
struct Recipe {
    line: usize,
    words: Vec<String>,
}

/// The commands of every ```sh block: continuation lines joined, comments and blank lines
/// dropped.
fn recipes(markdown: &str) -> Vec<Recipe> {
    let mut recipes = Vec::new();
    let mut in_sh_block = false;
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh_block = !in_sh_block && trimmed == "```sh";
            assert!(pending.is_none(), "line {}: a block ends inside a continued command", index + 1);
            continue;
        }
        if !in_sh_block {
            continue;
        }
        let (start, mut text) = pending.take().unwrap_or((index + 1, String::new()));
        if let Some(continued) = line.strip_suffix('\\') {
            text.push_str(continued);
            text.push(' ');
            pending = Some((start, text));
            continue;
        }
        text.push_str(line);
        let words = shell_words(&text).unwrap_or_else(|problem| panic!("line {start}: {problem}: {text}"));
        if !words.is_empty() {
            recipes.push(Recipe { line: start, words });
        }
    }
    recipes
}

/// Splits a command line as sh would: single quotes, double quotes (with `\"`, `\\` and
/// `\$` escapes), backslash escapes and `#` comments. Variables are left as written.
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut characters = line.chars();
    while let Some(character) = characters.next() {
        match character {
            ' ' | '\t' => words.extend(word.take()),
            '#' if word.is_none() => break,
            '\'' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match characters.next() {
                        Some('\'') => break,
                        Some(quoted) => current.push(quoted),
                        None => return Err("unterminated single quote".to_owned()),
                    }
                }
            }
            '"' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match characters.next() {
                        Some('"') => break,
                        Some('\\') => match characters.next() {
                            Some(escaped @ ('"' | '\\' | '$')) => current.push(escaped),
                            Some(other) => {
                                current.push('\\');
                                current.push(other);
                            }
                            None => return Err("unterminated double quote".to_owned()),
                        },
                        Some(quoted) => current.push(quoted),
                        None => return Err("unterminated double quote".to_owned()),
                    }
                }
            }
            '\\' => match characters.next() {
                Some(escaped) => word.get_or_insert_with(String::new).push(escaped),
                None => return Err("a trailing backslash".to_owned()),
            },
            other => word.get_or_insert_with(String::new).push(other),
        }
    }
    words.extend(word);
    Ok(words)
}

/// The `make run` addresses rewritten to `server`'s; false if the recipe names none.
fn rewrite_addresses(words: &mut [String], server: &DevServer) -> bool {
    let mut rewritten = false;
    for word in words.iter_mut() {
        let address = match word.as_str() {
            DEV_GROUPS => server.groups_addr(),
            DEV_MESSAGES => server.messages_addr(),
            DEV_FANOUT => server.fanout_addr(),
            _ => continue,
        };
        *word = address;
        rewritten = true;
    }
    rewritten
}

fn printed(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Runs one grpcurl recipe; a streaming `Subscribe` runs for a few seconds.
fn run_grpcurl(recipe: &Recipe, server: &DevServer) {
    let mut words = recipe.words[1..].to_vec();
    assert!(
        rewrite_addresses(&mut words, server),
        "line {}: grpcurl recipes must call the `make run` addresses (127.0.0.1:5005x): {:?}",
        recipe.line,
        recipe.words
    );
    let streaming = words.last().is_some_and(|method| method.ends_with("/Subscribe"));
    let max_time = if streaming { "3" } else { "20" };
    let output = Command::new("grpcurl")
        .args(["-max-time", max_time])
        .args(&words)
        .output()
        .unwrap_or_else(|error| panic!("running grpcurl ({error}); install it with `make tools`"));
    let text = printed(&output);
    eprintln!("line {}: grpcurl {}\n{text}", recipe.line, words.join(" "));
    if streaming {
        let ended_by_deadline = output.status.code() == Some(GRPCURL_DEADLINE_EXCEEDED);
        assert!(output.status.success() || ended_by_deadline, "line {}: the stream failed: {text}", recipe.line);
        assert!(text.contains("\"heartbeat\""), "line {}: the stream printed no heartbeat: {text}", recipe.line);
        return;
    }
    assert!(output.status.success(), "line {}: `grpcurl {}` failed:\n{text}", recipe.line, words.join(" "));
}

/// Runs one `fanfare ctl` recipe with the services' URLs in the environment.
fn run_ctl(recipe: &Recipe, server: &DevServer) {
    let mut words = recipe.words[1..].to_vec();
    let bounded = words.iter().any(|word| word == "--timeout" || word == "--count");
    let tails = words.iter().any(|word| word == "tail");
    let watches = words.iter().any(|word| word == "--watch" || word == "watch");
    if tails && !bounded {
        words.extend(["--timeout".to_owned(), "2".to_owned()]);
    }
    if watches && !bounded {
        words.extend(["--timeout".to_owned(), "30".to_owned()]);
    }
    let output = Command::new(env!("CARGO_BIN_EXE_fanfare"))
        .args(&words)
        .env("FANFARE_GROUPS_URL", format!("http://{}", server.groups_addr()))
        .env("FANFARE_MESSAGES_URL", format!("http://{}", server.messages_addr()))
        .env("FANFARE_FANOUT_URL", format!("http://{}", server.fanout_addr()))
        .env_remove("FANFARE_CTL_USER")
        .env_remove("FANFARE_SERVICE_TOKEN")
        .output()
        .expect("running fanfare ctl");
    let text = printed(&output);
    eprintln!("line {}: fanfare {}\n{text}", recipe.line, words.join(" "));
    assert!(output.status.success(), "line {}: `fanfare {}` failed:\n{text}", recipe.line, words.join(" "));
    if watches {
        assert!(text.contains("SUCCEEDED"), "line {}: the watched job did not succeed in time:\n{text}", recipe.line);
    }
}

#[tokio::test]
async fn every_grpcurl_and_ctl_recipe_of_the_runbook_works_against_fanfare_dev() {
    let server = DevServer::start().await;
    let mut grpcurl_runs = 0;
    let mut ctl_runs = 0;
    let mut streams = 0;
    for recipe in recipes(RUNBOOK) {
        match recipe.words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["grpcurl", .., method] => {
                streams += usize::from(method.ends_with("/Subscribe"));
                run_grpcurl(&recipe, &server);
                grpcurl_runs += 1;
            }
            ["fanfare", "ctl", ..] => {
                run_ctl(&recipe, &server);
                ctl_runs += 1;
            }
            _ => {}
        }
    }
    // A parser that found nothing would pass vacuously.
    assert!(grpcurl_runs >= 20, "only {grpcurl_runs} grpcurl recipes found");
    assert!(streams >= 1, "no Subscribe recipe found");
    assert!(ctl_runs >= 10, "only {ctl_runs} fanfare ctl recipes found");
}

#[test]
fn shell_words_split_like_sh() {
    let words = shell_words(r#"grpcurl -H 'x-user: 1' -d "{\"a\":1}" a\ b "$TOKEN" # comment"#).unwrap();
    assert_eq!(words, ["grpcurl", "-H", "x-user: 1", "-d", r#"{"a":1}"#, "a b", "$TOKEN"]);
    assert!(shell_words("echo 'open").is_err());
    let found = recipes("text\n```sh\n# note\ngrpcurl \\\n  -plaintext x\n\n```\n```text\ngrpcurl no\n```\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].line, 4);
    assert_eq!(found[0].words, ["grpcurl", "-plaintext", "x"]);
}
