//! The README's library snippets are the examples' code: each `// README: NAME` ..
//! `// README: end` region of `examples/NAME.rs`, dedented, is a rust block of the README.
//! (CI builds the examples with the tests, and `.ci/run` runs them.)

fn region(example: &str) -> String {
    let path = format!("{}/examples/{example}.rs", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).expect("read the example");
    let start = format!("// README: {example}\n");
    let from = src.find(&start).expect("the start marker") + start.len();
    let to = from + src[from..].find("// README: end").expect("the end marker");
    let lines: Vec<&str> = src[from..to].lines().collect();
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for l in lines {
        if l.trim().is_empty() {
            out.push('\n');
        } else {
            out.push_str(&l[indent..]);
            out.push('\n');
        }
    }
    out.trim_end().to_string() + "\n"
}

#[test]
fn the_readme_snippets_are_the_examples() {
    let readme = std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR")))
        .expect("read the README");
    for example in ["generate", "chat"] {
        let block = format!("```rust\n{}```\n", region(example));
        assert!(
            readme.contains(&block),
            "the README has no block equal to examples/{example}.rs's README region:\n{block}"
        );
    }
}
