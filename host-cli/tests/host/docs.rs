//! The book (`docs/`, an mdBook) and the README held to the repository: every relative link
//! lands on a file that exists, every page is in `SUMMARY.md`, and every command a code block
//! shows (`$H …`, `host-harness …`) names subcommands and flags the CLI has.

use clap::CommandFactory;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// README.md and every page under docs/, with their text.
fn pages() -> Vec<(PathBuf, String)> {
    let root = workspace();
    let mut pages = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages.sort();
    pages
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// The text outside fenced code blocks.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Markdown link targets `](target)` in the prose.
fn link_targets(text: &str) -> Vec<String> {
    let prose = prose(text);
    prose
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(t, _)| t.to_string()))
        .collect()
}

#[test]
fn every_relative_link_in_the_readme_and_the_book_lands_on_a_file() {
    let mut broken = Vec::new();
    for (page, text) in pages() {
        for target in link_targets(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let file = target.split('#').next().unwrap();
            if file.is_empty() {
                continue;
            }
            let resolved = page.parent().unwrap().join(file);
            if !resolved.exists() {
                broken.push(format!("{}: {target}", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_of_the_book_is_in_its_summary() {
    let docs = workspace().join("docs");
    let summary = std::fs::read_to_string(docs.join("SUMMARY.md")).unwrap();
    let listed: Vec<PathBuf> = link_targets(&summary)
        .iter()
        .map(|t| docs.join(t))
        .collect();
    let missing: Vec<String> = pages()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with(&docs) && !p.ends_with("SUMMARY.md") && !listed.contains(p))
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "pages not in docs/SUMMARY.md: {missing:?}"
    );
}

#[test]
fn the_readme_is_a_front_page_not_a_manual() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 200,
        "README.md is {lines} lines, over 200: move the rest to docs/"
    );
}

/// The words after `$H` or `host-harness` on a line of a code block (continuation lines joined).
fn invocations(text: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut fenced = false;
    let mut joined = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            continue;
        }
        joined.push_str(line.trim_end_matches('\\'));
        if line.ends_with('\\') {
            joined.push(' ');
            continue;
        }
        let logical = std::mem::take(&mut joined);
        let code = logical.split(" # ").next().unwrap_or_default();
        for start in ["$H ", "host-harness "] {
            for (i, _) in code.match_indices(start) {
                let mut words = code[i + start.len()..]
                    .split(['|', ';', '&', '>', '<', ')'])
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>();
                // `cargo run -p host-harness -- demo`: the CLI's words follow cargo's `--`.
                if words.first().is_some_and(|w| w == "--") {
                    words.remove(0);
                }
                let command_word = |w: &String| {
                    w.starts_with(|c: char| c.is_ascii_lowercase())
                        && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                };
                if words.first().is_some_and(command_word) {
                    found.push(words);
                }
            }
        }
    }
    found
}

/// Why the words do not name a command the CLI has, if they do not.
fn check_invocation(words: &[String]) -> Option<String> {
    let mut command = host_cli::Cli::command();
    command.build();
    let globals: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let mut current = &command;
    let mut path = Vec::new();
    for word in words {
        if let Some(flag) = word.strip_prefix("--") {
            let name = flag.split('=').next().unwrap();
            let known = current.get_arguments().any(|a| a.get_long() == Some(name))
                || globals.iter().any(|g| g == name)
                || matches!(name, "help" | "version");
            if !known {
                return Some(format!("`{}` has no --{name}", path.join(" ")));
            }
        } else if let Some(sub) = current.find_subcommand(word) {
            path.push(word.clone());
            current = sub;
        } else if path.is_empty() {
            return Some(format!("no command `{word}`"));
        }
    }
    None
}

#[test]
fn every_command_the_docs_show_exists_with_its_flags() {
    let mut wrong = Vec::new();
    let mut seen = 0;
    for (page, text) in pages() {
        for words in invocations(&text) {
            seen += 1;
            if let Some(why) = check_invocation(&words) {
                wrong.push(format!("{}: {}: {why}", page.display(), words.join(" ")));
            }
        }
    }
    assert!(
        seen > 20,
        "only {seen} commands found in the docs: is the parser broken?"
    );
    assert!(
        wrong.is_empty(),
        "commands the CLI does not have:\n{}",
        wrong.join("\n")
    );
}
