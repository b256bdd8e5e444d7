//! STUDENT regions: the parts of a lab's source that a student writes.
//!
//! A region is marked like this, and is always the whole body of a block expression or of
//! a function, so that a handout can replace its body with `todo!("<hint>")` and still
//! compile (the region's value is the block's value):
//!
//! ```text
//! let init = {
//!     // STUDENT: begin fork-init
//!     // Hint: what to use, where to look (one or two lines;
//!     // every comment line right after the hint belongs to it).
//!     child::spawn(...)?
//!     // STUDENT: end fork-init
//! };
//! ```
//!
//! The body starts at the first line after the hint that is not a `//` comment, so a body
//! never begins with a comment. The harness uses this module to put mistakes into a lab
//! (grading each rebuilt lab) and to make handouts; the panic hook uses it to name the
//! region a panic happened in.

const MARKER: &str = "// STUDENT:";
const BEGIN: &str = "// STUDENT: begin ";
const END: &str = "// STUDENT: end ";
const HINT: &str = "// Hint:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    /// The hint, its lines joined by single spaces.
    pub hint: String,
    /// 1-based line numbers of the `begin` and `end` markers.
    pub begin_line: usize,
    pub end_line: usize,
    /// The body lines, less the markers' indentation, joined by `\n` (no final newline).
    pub body: String,
}

/// Finds every region in `source`. An error names the line and what is wrong with it.
pub fn parse(source: &str) -> Result<Vec<Region>, String> {
    let lines: Vec<&str> = source.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut regions: Vec<Region> = Vec::new();
    let mut open: Option<(String, usize)> = None;
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if !trimmed.starts_with(MARKER) {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix(BEGIN).map(str::trim) {
            check_name(name, number)?;
            if let Some((outer, at)) = &open {
                return Err(format!(
                    "line {number}: region `{name}` begins inside region `{outer}` (line {at}): regions do not nest"
                ));
            }
            if let Some(earlier) = regions.iter().find(|r| r.name == name) {
                return Err(format!("line {number}: region `{name}` again (first at line {})", earlier.begin_line));
            }
            open = Some((name.to_string(), number));
        } else if let Some(name) = trimmed.strip_prefix(END).map(str::trim) {
            check_name(name, number)?;
            let Some((open_name, begin_line)) = open.take() else {
                return Err(format!("line {number}: end of region `{name}`, which never began"));
            };
            if open_name != name {
                return Err(format!(
                    "line {number}: end of region `{name}`, but the open region is `{open_name}` (line {begin_line})"
                ));
            }
            regions.push(region(&lines, name, begin_line, number)?);
        } else {
            return Err(format!(
                "line {number}: unknown marker {trimmed:?}: expected `{BEGIN}<name>` or `{END}<name>`"
            ));
        }
    }
    match open {
        Some((name, at)) => Err(format!("line {at}: region `{name}` never ends (no `{END}{name}`)")),
        None => Ok(regions),
    }
}

fn check_name(name: &str, line: usize) -> Result<(), String> {
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("line {line}: a region's name is one word, got {name:?}"));
    }
    Ok(())
}

/// Builds the region between its markers (1-based lines), checking the block rule.
fn region(lines: &[&str], name: &str, begin_line: usize, end_line: usize) -> Result<Region, String> {
    let inner = &lines[begin_line..end_line - 1];
    let hint_first = inner.first().and_then(|l| l.trim().strip_prefix(HINT)).ok_or_else(|| {
        format!("line {}: region `{name}` needs a `{HINT} ...` line right after its begin", begin_line + 1)
    })?;
    let mut hint: Vec<&str> = vec![hint_first.trim()];
    let mut body_start = 1;
    while let Some(more) = inner.get(body_start).and_then(|l| l.trim().strip_prefix("//")) {
        hint.push(more.trim());
        body_start += 1;
    }
    let hint = hint.into_iter().filter(|h| !h.is_empty()).collect::<Vec<_>>().join(" ");
    if hint.is_empty() {
        return Err(format!("line {}: region `{name}` has an empty hint", begin_line + 1));
    }
    let body_lines = &inner[body_start..];
    if body_lines.iter().all(|l| l.trim().is_empty()) {
        return Err(format!("line {end_line}: region `{name}` has no body"));
    }
    // The block rule: `{` just before the begin marker, `}` just after the end marker.
    let before = lines[..begin_line - 1].iter().rev().find(|l| !l.trim().is_empty());
    if !before.is_some_and(|l| l.trim_end().ends_with('{')) {
        return Err(format!(
            "line {begin_line}: region `{name}` must be the whole body of a block or function: the line before it must end with `{{`"
        ));
    }
    let after = lines[end_line..].iter().find(|l| !l.trim().is_empty());
    if !after.is_some_and(|l| l.trim_start().starts_with('}')) {
        return Err(format!(
            "line {end_line}: region `{name}` must be the whole body of a block or function: the line after it must start with `}}`"
        ));
    }
    let indent = indentation(lines[begin_line - 1]);
    let body = body_lines.iter().map(|l| l.strip_prefix(indent).unwrap_or(l.trim_start())).collect::<Vec<_>>();
    Ok(Region { name: name.to_string(), hint, begin_line, end_line, body: body.join("\n").trim_end().to_string() })
}

fn indentation(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

/// `source` with the body of region `region` replaced by `new_body`, re-indented to the
/// region's indentation; the markers and the hint stay. `new_body` may come indented any
/// way: its common indentation is removed first.
pub fn replace_body(source: &str, region: &str, new_body: &str) -> Result<String, String> {
    let regions = parse(source)?;
    let target = regions.iter().find(|r| r.name == region).ok_or_else(|| format!("no region named `{region}`"))?;
    let body = dedent(new_body);
    if body.trim().is_empty() {
        return Err(format!("the new body of `{region}` is empty: a region needs a body (`todo!()` will do)"));
    }
    let lines: Vec<&str> = source.split_inclusive('\n').collect();
    let begin = target.begin_line - 1;
    let indent = indentation(lines[begin]).to_string();
    let hint_lines = 1 + lines[begin + 2..].iter().take_while(|l| l.trim().starts_with("//")).count();
    let newline = if lines[begin].ends_with("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(source.len() + new_body.len());
    for line in &lines[..begin + 1 + hint_lines] {
        out.push_str(line);
    }
    for line in body.lines() {
        if !line.trim().is_empty() {
            out.push_str(&indent);
            out.push_str(line);
        }
        out.push_str(newline);
    }
    for line in &lines[target.end_line - 1..] {
        out.push_str(line);
    }
    // The result must read back with exactly this body (a leading comment would not).
    let reparsed = parse(&out)?;
    let now = reparsed.iter().find(|r| r.name == region).map(|r| r.body.as_str());
    if now != Some(body.trim_end()) {
        return Err(format!(
            "the new body of `{region}` does not survive a round trip: does it begin with a `//` comment? \
             That would read as part of the hint"
        ));
    }
    Ok(out)
}

/// Removes the indentation common to every non-blank line; blank lines become empty.
fn dedent(text: &str) -> String {
    let common =
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    text.lines()
        .map(|l| if l.trim().is_empty() { "" } else { &l[common..] })
        .collect::<Vec<_>>()
        .join("\n")
        .trim_matches('\n')
        .to_string()
}

/// The body a handout puts in the region: `todo!("<hint>")`, the hint escaped so that it
/// is a plain string literal and no format string (quotes, backslashes, braces).
pub fn todo_body(region: &Region) -> String {
    let mut escaped = String::with_capacity(region.hint.len());
    for c in region.hint.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '{' => escaped.push_str("{{"),
            '}' => escaped.push_str("}}"),
            '\n' | '\r' | '\t' => escaped.push(' '),
            c => escaped.push(c),
        }
    }
    format!("todo!(\"{escaped}\")")
}

/// The region whose markers enclose `line` (1-based), markers included.
pub fn at_line(regions: &[Region], line: usize) -> Option<&Region> {
    regions.iter().find(|r| r.begin_line <= line && line <= r.end_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = "fn run() -> Result<()> {
    let before = 1;
    let init = {
        // STUDENT: begin fork-init
        // Hint: use \"spawn\" with {braces}
        // and a second line.
        let x = spawn(
            1,
        )?;

        x
        // STUDENT: end fork-init
    };
    Ok(())
}

fn install() -> Result<()> {
    // STUDENT: begin install
    // Hint: sigaction(2).
    sigaction()?;
    Ok(())
    // STUDENT: end install
}
";

    fn must_fail(source: &str, expected: &str) {
        match parse(source) {
            Ok(regions) => panic!("parsed {regions:?}, expected an error with {expected:?}"),
            Err(e) => assert!(e.contains(expected), "error {e:?} lacks {expected:?}"),
        }
    }

    #[test]
    fn parses_names_hints_lines_and_bodies() {
        let regions = parse(LAB).expect("parses");
        assert_eq!(regions.len(), 2);
        let fork = &regions[0];
        assert_eq!(fork.name, "fork-init");
        assert_eq!(fork.hint, "use \"spawn\" with {braces} and a second line.");
        assert_eq!((fork.begin_line, fork.end_line), (4, 12));
        assert_eq!(fork.body, "let x = spawn(\n    1,\n)?;\n\nx");
        assert_eq!(regions[1].name, "install");
        assert_eq!(regions[1].body, "sigaction()?;\nOk(())");
    }

    #[test]
    fn at_line_includes_the_markers() {
        let regions = parse(LAB).expect("parses");
        assert_eq!(at_line(&regions, 3), None);
        assert_eq!(at_line(&regions, 4).map(|r| r.name.as_str()), Some("fork-init"));
        assert_eq!(at_line(&regions, 9).map(|r| r.name.as_str()), Some("fork-init"));
        assert_eq!(at_line(&regions, 12).map(|r| r.name.as_str()), Some("fork-init"));
        assert_eq!(at_line(&regions, 13), None);
        assert_eq!(at_line(&regions, 20).map(|r| r.name.as_str()), Some("install"));
    }

    #[test]
    fn bad_markers_name_their_line() {
        must_fail("{\n// STUDENT: begin a\n// Hint: h\nx\n", "line 2: region `a` never ends");
        must_fail("{\n// STUDENT: end a\n}\n", "line 2: end of region `a`, which never began");
        must_fail(
            "{\n// STUDENT: begin a\n// Hint: h\n{\n// STUDENT: begin b\n",
            "line 5: region `b` begins inside region `a` (line 2)",
        );
        must_fail(
            "{\n// STUDENT: begin a\n// Hint: h\nx\n// STUDENT: end b\n}\n",
            "line 5: end of region `b`, but the open region is `a`",
        );
        must_fail("{\n// STUDENT: begin a\nx\n// STUDENT: end a\n}\n", "line 3: region `a` needs a `// Hint:");
        must_fail(
            "{\n// STUDENT: begin a\n// Hint:\nx\n// STUDENT: end a\n}\n",
            "line 3: region `a` has an empty hint",
        );
        must_fail(
            "{\n// STUDENT: begin a\n// Hint: h\nx\n// STUDENT: end a\n}\n{\n// STUDENT: begin a\n// Hint: h\nx\n// STUDENT: end a\n}\n",
            "line 8: region `a` again (first at line 2)",
        );
        must_fail("{\n// STUDENT: begin a\n// Hint: h\n// STUDENT: end a\n}\n", "line 4: region `a` has no body");
        must_fail("{\n// STUDENT: start a\n}\n", "line 2: unknown marker");
        must_fail("{\n// STUDENT: begin two words\n", "line 2: a region's name is one word");
    }

    #[test]
    fn a_region_must_be_a_whole_block() {
        must_fail(
            "let a = 1;\n// STUDENT: begin a\n// Hint: h\nx\n// STUDENT: end a\n}\n",
            "line 2: region `a` must be the whole body",
        );
        must_fail(
            "{\n// STUDENT: begin a\n// Hint: h\nx\n// STUDENT: end a\ny\n}\n",
            "line 5: region `a` must be the whole body",
        );
    }

    #[test]
    fn replace_body_reindents_and_keeps_markers_and_hint() {
        let replaced = replace_body(LAB, "fork-init", "            spawn(2)?\n").expect("replaces");
        assert!(replaced
            .contains("        // and a second line.\n        spawn(2)?\n        // STUDENT: end fork-init\n    };\n"));
        let regions = parse(&replaced).expect("still parses");
        assert_eq!(regions[0].body, "spawn(2)?");
        assert_eq!(regions[0].hint, parse(LAB).expect("parses")[0].hint);
        // Multi-line bodies keep their relative indentation; blank lines stay blank.
        let replaced = replace_body(LAB, "install", "if a {\n    b()?;\n}\n\nOk(())").expect("replaces");
        assert!(replaced.contains(
            "    // Hint: sigaction(2).\n    if a {\n        b()?;\n    }\n\n    Ok(())\n    // STUDENT: end install\n"
        ));
    }

    #[test]
    fn replacing_a_body_with_itself_changes_nothing() {
        for region in parse(LAB).expect("parses") {
            assert_eq!(replace_body(LAB, &region.name, &region.body).expect("replaces"), LAB);
        }
    }

    #[test]
    fn replace_body_refuses_what_would_not_read_back() {
        assert!(replace_body(LAB, "nope", "x").is_err_and(|e| e.contains("no region named `nope`")));
        assert!(replace_body(LAB, "install", "  \n").is_err_and(|e| e.contains("empty")));
        assert!(replace_body(LAB, "install", "// a comment\nOk(())").is_err_and(|e| e.contains("round trip")));
        assert!(replace_body(LAB, "install", "// STUDENT: end install\n").is_err());
    }

    #[test]
    fn todo_body_is_a_plain_literal() {
        let regions = parse(LAB).expect("parses");
        assert_eq!(todo_body(&regions[0]), r#"todo!("use \"spawn\" with {{braces}} and a second line.")"#);
        let replaced = replace_body(LAB, "fork-init", &todo_body(&regions[0])).expect("replaces");
        assert_eq!(parse(&replaced).expect("parses")[0].body, todo_body(&regions[0]));
        let slash = Region { hint: r"a\b".into(), ..regions[1].clone() };
        assert_eq!(todo_body(&slash), r#"todo!("a\\b")"#);
    }
}
