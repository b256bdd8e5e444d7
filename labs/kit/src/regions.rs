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
