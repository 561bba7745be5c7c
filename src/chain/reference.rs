//! References from one call to the data before it: `{{ input.customer.id }}`,
//! `{{ steps.fetch.output.body.items[0].id }}`, a step's `output.status` and
//! `output.headers.<name>`, and the older form `{{ tasks[0].output_data.id }}`
//! (the first step's body). A reference is a path of names and indexes, not a
//! program.
//!
//! Rendering: a JSON value that is exactly one reference becomes the referenced
//! value with its type (an integer stays an integer, an array stays an array); a
//! reference inside a string (a url, a query value, a header, a longer string)
//! takes a string, a number or a boolean, percent-encoded where the string is part
//! of a URL. A reference that finds nothing fails with what it is and where it
//! stopped: never an empty string, a zero or a null in its place.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Name(String),
    Index(usize),
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Name(name) if is_plain(name) => write!(f, ".{name}"),
            Segment::Name(name) => write!(f, "[{name:?}]"),
            Segment::Index(i) => write!(f, "[{i}]"),
        }
    }
}

fn is_plain(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// What a reference starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The chain's (or the template's) input.
    Input,
    /// A step's response body, by the step's id.
    Body(String),
    /// A step's response body, by its position (the older `tasks[N].output_data`).
    BodyAt(usize),
    /// A step's response status.
    Status(String),
    /// One of a step's response headers (names compare without case).
    Header(String, String),
}

/// A parsed reference: where it starts and the path from there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub source: Source,
    pub path: Vec<Segment>,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Input => write!(f, "input")?,
            Source::Body(step) => write!(f, "steps.{step}.output.body")?,
            Source::BodyAt(i) => write!(f, "tasks[{i}].output_data")?,
            Source::Status(step) => write!(f, "steps.{step}.output.status")?,
            Source::Header(step, name) => write!(f, "steps.{step}.output.headers.{name}")?,
        }
        for segment in &self.path {
            write!(f, "{segment}")?;
        }
        Ok(())
    }
}

impl Reference {
    /// The step it reads from, by id, when it reads a step.
    pub fn step(&self) -> Option<&str> {
        match &self.source {
            Source::Body(step) | Source::Status(step) | Source::Header(step, _) => Some(step),
            Source::Input | Source::BodyAt(_) => None,
        }
    }
}

/// Why a reference does not parse or does not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefError {
    /// The reference as written (inside its braces).
    pub reference: String,
    pub message: String,
}

impl fmt::Display for RefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{{ {} }}}}: {}", self.reference, self.message)
    }
}

impl std::error::Error for RefError {}

/// Parses the inside of `{{ ... }}`.
pub fn parse(text: &str) -> Result<Reference, RefError> {
    let written = text.trim();
    let fail = |message: String| RefError {
        reference: written.to_string(),
        message,
    };
    let segments = segments(written).map_err(fail)?;
    let name = |i: usize| match segments.get(i) {
        Some(Segment::Name(n)) => Some(n.as_str()),
        _ => None,
    };
    let rest = |from: usize| segments[from.min(segments.len())..].to_vec();
    let (source, path) = match (name(0), segments.get(1)) {
        (Some("input"), _) => (Source::Input, rest(1)),
        (Some("steps"), Some(Segment::Name(step))) => {
            if name(2) != Some("output") {
                return Err(fail(format!(
                    "after steps.{step} comes .output (.body, .status or .headers.<name>)"
                )));
            }
            match name(3) {
                Some("body") => (Source::Body(step.clone()), rest(4)),
                Some("status") if segments.len() == 4 => (Source::Status(step.clone()), vec![]),
                Some("headers") => match (name(4), segments.len()) {
                    (Some(header), 5) => (
                        Source::Header(step.clone(), header.to_ascii_lowercase()),
                        vec![],
                    ),
                    _ => return Err(fail("a header is read whole: .headers.<name>".into())),
                },
                _ => {
                    return Err(fail(format!(
                        "steps.{step}.output is followed by .body, .status or .headers.<name>"
                    )));
                }
            }
        }
        (Some("tasks"), Some(Segment::Index(i))) if name(2) == Some("output_data") => {
            (Source::BodyAt(*i), rest(3))
        }
        _ => {
            return Err(fail(
                "a reference starts with input, steps.<id>.output or tasks[<n>].output_data".into(),
            ));
        }
    };
    Ok(Reference { source, path })
}

/// Splits `a.b[0]["c d"]` into its segments.
fn segments(text: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut expect_name = true;
    while let Some(&(at, c)) = chars.peek() {
        match c {
            '.' if !expect_name => {
                chars.next();
                expect_name = true;
            }
            '[' => {
                chars.next();
                let mut inside = String::new();
                let mut closed = false;
                let quoted = chars.peek().is_some_and(|(_, c)| *c == '"');
                if quoted {
                    chars.next();
                    let mut escaped = false;
                    for (_, c) in chars.by_ref() {
                        match (escaped, c) {
                            (false, '\\') => escaped = true,
                            (false, '"') => {
                                closed = true;
                                break;
                            }
                            (_, c) => {
                                inside.push(c);
                                escaped = false;
                            }
                        }
                    }
                    if !closed || chars.next().map(|(_, c)| c) != Some(']') {
                        return Err(format!("an unclosed [\"...\"] at {at}"));
                    }
                    out.push(Segment::Name(inside));
                } else {
                    for (_, c) in chars.by_ref() {
                        if c == ']' {
                            closed = true;
                            break;
                        }
                        inside.push(c);
                    }
                    let index = inside
                        .trim()
                        .parse::<usize>()
                        .map_err(|_| format!("[{inside}] at {at}: an index is a whole number"))?;
                    if !closed {
                        return Err(format!("an unclosed [ at {at}"));
                    }
                    out.push(Segment::Index(index));
                }
                expect_name = false;
            }
            c if expect_name && (c.is_ascii_alphabetic() || c == '_') => {
                let mut name = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        name.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Segment::Name(name));
                expect_name = false;
            }
            c => return Err(format!("{c:?} at {at} does not belong in a path")),
        }
    }
    if out.is_empty() || expect_name {
        return Err("an empty path, or one that ends with a dot".into());
    }
    Ok(out)
}

/// A piece of a string template: text, or a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Ref(Reference),
}

/// Splits a string into text and references; an unclosed `{{` or a reference
/// that does not parse is an error.
pub fn pieces(template: &str) -> Result<Vec<Piece>, RefError> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            out.push(Piece::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| RefError {
            reference: after.chars().take(40).collect(),
            message: "a {{ without its }}".into(),
        })?;
        out.push(Piece::Ref(parse(&after[..close])?));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    Ok(out)
}

/// Every reference in a JSON template, in document order.
pub fn references_in(template: &Value) -> Result<Vec<Reference>, RefError> {
    let mut found = Vec::new();
    collect(template, &mut found)?;
    Ok(found)
}

fn collect(value: &Value, found: &mut Vec<Reference>) -> Result<(), RefError> {
    match value {
        Value::String(s) => found.extend(pieces(s)?.into_iter().filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })),
        Value::Array(items) => {
            for item in items {
                collect(item, found)?;
            }
        }
        Value::Object(map) => {
            for item in map.values() {
                collect(item, found)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A finished step's response, as references read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    pub status: u16,
    /// Names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

/// What references resolve against. Shared parts, so a chain's input and its
/// steps' outputs are parsed once and read by every step after them.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub input: Arc<Value>,
    /// Finished steps by id.
    pub steps: BTreeMap<String, Arc<Output>>,
    /// Step ids in the chain's order, for `tasks[N]`.
    pub order: Arc<[String]>,
}

impl Context {
    /// The value a reference names; an error says where the path stopped.
    pub fn resolve(&self, reference: &Reference) -> Result<Value, RefError> {
        let fail = |message: String| RefError {
            reference: reference.to_string(),
            message,
        };
        let step = |id: &str| {
            self.steps.get(id).ok_or_else(|| {
                fail(format!(
                    "step {id} has no output (it did not run, or got no response)"
                ))
            })
        };
        let start = match &reference.source {
            Source::Input => self.input.as_ref(),
            Source::Body(id) => &step(id)?.body,
            Source::BodyAt(i) => {
                let id = self
                    .order
                    .get(*i)
                    .ok_or_else(|| fail(format!("there is no step {i}")))?;
                &step(id)?.body
            }
            Source::Status(id) => return Ok(Value::from(step(id)?.status)),
            Source::Header(id, name) => {
                return step(id)?
                    .headers
                    .get(name)
                    .map(|v| Value::String(v.clone()))
                    .ok_or_else(|| fail(format!("the response has no {name} header")));
            }
        };
        let mut at = start;
        let mut walked = String::new();
        for segment in &reference.path {
            let next = match (segment, at) {
                (Segment::Name(name), Value::Object(map)) => map.get(name),
                (Segment::Index(i), Value::Array(items)) => items.get(*i),
                _ => None,
            };
            let Some(next) = next else {
                let what = match at {
                    Value::Object(_) => "an object without it",
                    Value::Array(items) if items.is_empty() => "an empty array",
                    Value::Array(_) => "an array too short",
                    Value::Null => "null",
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::String(_) => "a string",
                };
                let at = if walked.is_empty() {
                    "the start".into()
                } else {
                    walked
                };
                return Err(fail(format!("{segment} not found: {at} is {what}")));
            };
            walked.push_str(&segment.to_string());
            at = next;
        }
        Ok(at.clone())
    }
}

/// Where a rendered string goes: plain text, or part of a URL (percent-encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Text,
    Url,
}

/// Renders a string template: each reference takes a scalar.
pub fn render_str(template: &str, ctx: &Context, into: Placement) -> Result<String, RefError> {
    let mut out = String::with_capacity(template.len());
    for piece in pieces(template)? {
        match piece {
            Piece::Text(text) => out.push_str(&text),
            Piece::Ref(reference) => {
                let value = ctx.resolve(&reference)?;
                let text = match value {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err(RefError {
                            reference: reference.to_string(),
                            message: format!(
                                "is {}; inside a string it must be a string, a number or a boolean",
                                kind(&other)
                            ),
                        });
                    }
                };
                match into {
                    Placement::Text => out.push_str(&text),
                    Placement::Url => out.push_str(&percent_encoded(&text)),
                }
            }
        }
    }
    Ok(out)
}

/// Renders a JSON template: a string that is exactly one reference takes the
/// referenced value whole; any other string is rendered as text.
pub fn render_json(template: &Value, ctx: &Context) -> Result<Value, RefError> {
    Ok(match template {
        Value::String(s) => match pieces(s)?.as_slice() {
            [Piece::Ref(reference)] => ctx.resolve(reference)?,
            _ => Value::String(render_str(s, ctx, Placement::Text)?),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| render_json(item, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, ctx)?)))
                .collect::<Result<_, RefError>>()?,
        ),
        other => other.clone(),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Every byte but the unreserved ones (RFC 3986) as `%XX`: safe in a path
/// segment and in a query value alike.
fn percent_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
