//! PLACEHOLDER until the labkit branch lands: STUDENT regions of a lab's source.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    pub hint: String,
    pub begin_line: usize,
    pub end_line: usize,
    pub body: String,
}

pub fn parse(source: &str) -> Result<Vec<Region>, String> {
    let mut regions = Vec::new();
    let mut open: Option<Region> = None;
    for (index, line) in source.lines().enumerate() {
        let text = line.trim();
        if let Some(name) = text.strip_prefix("// STUDENT: begin ") {
            open = Some(Region {
                name: name.trim().into(),
                hint: String::new(),
                begin_line: index + 1,
                end_line: 0,
                body: String::new(),
            });
        } else if text.starts_with("// STUDENT: end ") {
            let mut region = open.take().ok_or_else(|| format!("line {}: end without begin", index + 1))?;
            region.end_line = index + 1;
            regions.push(region);
        } else if let Some(region) = open.as_mut() {
            if let Some(hint) = text.strip_prefix("// Hint: ") {
                region.hint = hint.to_string();
            }
        }
    }
    Ok(regions)
}

/// PLACEHOLDER: the body lines replaced, markers and hint kept, re-indented.
pub fn replace_body(source: &str, region: &str, new_body: &str) -> Result<String, String> {
    let regions = parse(source)?;
    let r = regions.iter().find(|r| r.name == region).ok_or_else(|| format!("no region {region}"))?;
    let lines: Vec<&str> = source.lines().collect();
    let begin = r.begin_line;
    let mut first_body = begin;
    while lines.get(first_body).is_some_and(|l| l.trim().starts_with("//")) {
        first_body += 1;
    }
    let indent: String = lines[begin - 1].chars().take_while(|c| c.is_whitespace()).collect();
    let mut out: Vec<String> = lines[..first_body].iter().map(|l| l.to_string()).collect();
    out.extend(new_body.lines().map(|l| if l.is_empty() { String::new() } else { format!("{indent}{l}") }));
    out.extend(lines[r.end_line - 1..].iter().map(|l| l.to_string()));
    Ok(out.join("\n") + "\n")
}

/// PLACEHOLDER: what a handout puts in a region.
pub fn todo_body(region: &Region) -> String {
    format!("todo!({:?})", region.hint)
}
