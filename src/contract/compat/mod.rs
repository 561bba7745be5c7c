//! Whether one JSON Schema (draft-07) fits another: every value the producer's
//! schema admits, the consumer's admits too. The answer is yes, no or cannot tell,
//! with a finding for each place it is not yes: where in the producer's schema and
//! in the consumer's (JSON pointers), what the consumer expects and what the
//! producer may send.
//!
//! It is a walk over the keywords both schemas use, not a solver. Each rule errs
//! one way only: a "yes" is a proof; where the walk cannot prove or refute (a
//! `pattern` against another, `not`, `if`, a union the producer may spread across
//! several branches) it says "cannot tell", never "yes". `$ref`s resolve inside
//! the document and in the registry of contracts ([`Resolve`]), never elsewhere.

mod keywords;

use std::collections::BTreeSet;

use serde_json::{Value, json};

/// How far a walk goes into `$ref`s before it stops with "cannot tell": a
/// recursive schema has no end.
const MAX_DEPTH: usize = 48;

/// The answer for a whole check or for one place in it; the order is from best to
/// worst, so a check's answer is its worst finding's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Yes,
    CannotTell,
    No,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Yes => "yes",
            Verdict::CannotTell => "cannot tell",
            Verdict::No => "no",
        }
    }
}

/// One place where the producer's schema does not (or may not) fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `No` or `CannotTell`.
    pub verdict: Verdict,
    /// JSON pointer into the producer's schema.
    pub producer: String,
    /// JSON pointer into the consumer's schema.
    pub consumer: String,
    pub expected: String,
    pub found: String,
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fit {
    pub findings: Vec<Finding>,
}

impl Fit {
    pub fn verdict(&self) -> Verdict {
        self.findings
            .iter()
            .map(|f| f.verdict)
            .max()
            .unwrap_or(Verdict::Yes)
    }
}

/// Where `$ref`s that leave their document resolve: the registry of contracts.
pub trait Resolve {
    /// The document named by `uri` (without its fragment).
    fn document(&self, uri: &str) -> Option<&Value>;
}

/// A registry that knows no document: references stay inside their own.
pub struct NoRegistry;

impl Resolve for NoRegistry {
    fn document(&self, _uri: &str) -> Option<&Value> {
        None
    }
}

/// Whether every value `producer` admits, `consumer` admits too.
pub fn fits(producer: &Value, consumer: &Value, registry: &dyn Resolve) -> Fit {
    let mut walk = Walk {
        registry,
        findings: Vec::new(),
    };
    let p = Side::root(producer);
    let c = Side::root(consumer);
    walk.check(&p, &c, 0);
    Fit {
        findings: walk.findings,
    }
}

/// A schema in its document, and where it is.
#[derive(Clone)]
struct Side<'a> {
    schema: &'a Value,
    document: &'a Value,
    pointer: String,
}

impl<'a> Side<'a> {
    fn root(schema: &'a Value) -> Side<'a> {
        Side {
            schema,
            document: schema,
            pointer: String::new(),
        }
    }

    fn at(&self, schema: &'a Value, path: &[&str]) -> Side<'a> {
        let mut pointer = self.pointer.clone();
        for part in path {
            pointer.push('/');
            pointer.push_str(&part.replace('~', "~0").replace('/', "~1"));
        }
        Side {
            schema,
            document: self.document,
            pointer,
        }
    }

    fn keyword(&self, name: &str) -> Option<&'a Value> {
        self.schema.as_object()?.get(name)
    }

    fn pointer(&self) -> String {
        if self.pointer.is_empty() {
            "/".into()
        } else {
            self.pointer.clone()
        }
    }
}

/// Keywords that say nothing about which values a schema admits.
const ANNOTATIONS: [&str; 13] = [
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "definitions",
    "readOnly",
    "writeOnly",
    "contentMediaType",
    "contentEncoding",
    "additionalItems",
];

/// Whether a schema admits every value.
fn admits_all(schema: &Value) -> bool {
    match schema {
        Value::Bool(b) => *b,
        Value::Object(map) => map.keys().all(|k| ANNOTATIONS.contains(&k.as_str())),
        _ => false,
    }
}

const TYPES: [&str; 7] = [
    "null", "boolean", "object", "array", "number", "integer", "string",
];

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
    }
}

/// The types a schema admits, from `type` (or its `const` or `enum`); None when it
/// says nothing of them.
fn types(side: &Side) -> Option<BTreeSet<&'static str>> {
    let named = |name: &str| TYPES.iter().copied().find(|t| *t == name);
    if let Some(t) = side.keyword("type") {
        return Some(match t {
            Value::String(s) => named(s).into_iter().collect(),
            Value::Array(list) => list.iter().filter_map(|v| named(v.as_str()?)).collect(),
            _ => BTreeSet::new(),
        });
    }
    if let Some(value) = side.keyword("const") {
        return Some([type_of(value)].into());
    }
    if let Some(Value::Array(values)) = side.keyword("enum") {
        return Some(values.iter().map(type_of).collect());
    }
    None
}

/// Whether a set of types takes values of type `t` (an integer is a number).
fn takes(types: &BTreeSet<&str>, t: &str) -> bool {
    types.contains(t) || (t == "integer" && types.contains("number"))
}

fn list(types: &BTreeSet<&str>) -> String {
    types.iter().copied().collect::<Vec<_>>().join(" or ")
}

struct Walk<'r> {
    registry: &'r dyn Resolve,
    findings: Vec<Finding>,
}

impl<'r> Walk<'r> {
    fn add(&mut self, verdict: Verdict, p: &Side, c: &Side, expected: String, found: String) {
        self.findings.push(Finding {
            verdict,
            producer: p.pointer(),
            consumer: c.pointer(),
            expected,
            found,
        });
    }

    /// Runs `f` apart: its findings are returned, not kept.
    fn apart(&mut self, f: impl FnOnce(&mut Walk<'r>)) -> Vec<Finding> {
        let kept = std::mem::take(&mut self.findings);
        f(self);
        std::mem::replace(&mut self.findings, kept)
    }

    /// Follows `$ref`s to the schema they name; None (with a finding) when one
    /// does not resolve.
    fn resolved<'a>(
        &mut self,
        side: &Side<'a>,
        other: &Side,
        producer_side: bool,
    ) -> Option<Side<'a>>
    where
        'r: 'a,
    {
        let mut side = side.clone();
        for _ in 0..MAX_DEPTH {
            let Some(reference) = side.keyword("$ref").and_then(Value::as_str) else {
                return Some(side);
            };
            let (uri, fragment) = reference.split_once('#').unwrap_or((reference, ""));
            let document = match uri {
                "" => Some(side.document),
                uri => self.registry.document(uri),
            };
            let target = document.and_then(|d| d.pointer(fragment).map(|s| (d, s)));
            match target {
                Some((document, schema)) => {
                    side = Side {
                        schema,
                        document,
                        pointer: side.pointer.clone(),
                    };
                }
                None => {
                    let (p, c) = if producer_side {
                        (&side, other)
                    } else {
                        (other, &side)
                    };
                    self.add(
                        Verdict::No,
                        p,
                        c,
                        "a $ref to a schema of this document or of the registry of contracts"
                            .into(),
                        format!("$ref {reference}, which names none"),
                    );
                    return None;
                }
            }
        }
        None
    }

    fn check(&mut self, p: &Side, c: &Side, depth: usize) {
        if depth > MAX_DEPTH {
            self.add(
                Verdict::CannotTell,
                p,
                c,
                "a schema of bounded depth".into(),
                "references nested too deep to follow (a recursive schema)".into(),
            );
            return;
        }
        let Some(p) = self.resolved(p, c, true) else {
            return;
        };
        let Some(c) = self.resolved(c, &p, false) else {
            return;
        };
        if admits_all(c.schema) || p.schema == &Value::Bool(false) {
            return;
        }
        if c.schema == &Value::Bool(false) {
            self.add(
                Verdict::No,
                &p,
                &c,
                "nothing (the schema is false)".into(),
                "values".into(),
            );
            return;
        }
        // The producer as a union or an intersection.
        if self.producer_union(&p, &c, depth) || self.producer_intersection(&p, &c, depth) {
            return;
        }
        // The consumer's combinators, then its own keywords.
        self.consumer_combinators(&p, &c, depth);
        if self.producer_values(&p, &c) {
            return;
        }
        let Some(kinds) = self.check_types(&p, &c) else {
            return;
        };
        if self.consumer_values(&p, &c, &kinds) {
            return;
        }
        if kinds.contains("number") || kinds.contains("integer") {
            self.numbers(&p, &c);
        }
        if kinds.contains("string") {
            self.strings(&p, &c);
        }
        if kinds.contains("object") {
            self.objects(&p, &c, depth);
        }
        if kinds.contains("array") {
            self.arrays(&p, &c, depth);
        }
    }

    /// A producer that is `anyOf` or `oneOf` fits when each branch does (what its
    /// other keywords add only narrows it, so a "no" becomes "cannot tell").
    fn producer_union(&mut self, p: &Side, c: &Side, depth: usize) -> bool {
        let (keyword, branches) = match (p.keyword("anyOf"), p.keyword("oneOf")) {
            (Some(Value::Array(b)), _) => ("anyOf", b),
            (_, Some(Value::Array(b))) => ("oneOf", b),
            _ => return false,
        };
        let narrowed = p.schema.as_object().is_some_and(|m| {
            m.keys()
                .any(|k| k != keyword && !ANNOTATIONS.contains(&k.as_str()))
        });
        for (i, branch) in branches.iter().enumerate() {
            let index = i.to_string();
            let side = p.at(branch, &[keyword, &index]);
            let mut found = self.apart(|walk| walk.check(&side, c, depth + 1));
            if narrowed {
                for f in &mut found {
                    f.verdict = f.verdict.min(Verdict::CannotTell);
                }
            }
            self.findings.extend(found);
        }
        true
    }

    /// A producer with `allOf` is checked as its branches merged into one schema
    /// (a merge that admits at least what all of them together admit).
    fn producer_intersection(&mut self, p: &Side, c: &Side, depth: usize) -> bool {
        let Some(Value::Array(branches)) = p.keyword("allOf") else {
            return false;
        };
        let mut merged = p.schema.as_object().cloned().unwrap_or_default();
        merged.remove("allOf");
        for branch in branches {
            let Some(branch) = self.resolved(&p.at(branch, &[]), c, true) else {
                return true;
            };
            match branch.schema {
                Value::Bool(true) => {}
                Value::Bool(false) => return true,
                Value::Object(keywords) => keywords::merge(&mut merged, keywords),
                _ => {}
            }
        }
        let merged = Value::Object(merged);
        let side = Side {
            schema: &merged,
            document: p.document,
            pointer: p.pointer.clone(),
        };
        self.check(&side, c, depth + 1);
        true
    }

    fn consumer_combinators(&mut self, p: &Side, c: &Side, depth: usize) {
        if let Some(Value::Array(branches)) = c.keyword("allOf") {
            for (i, branch) in branches.iter().enumerate() {
                let index = i.to_string();
                self.check(p, &c.at(branch, &["allOf", &index]), depth + 1);
            }
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = c.keyword(keyword) {
                self.consumer_union(p, c, keyword, branches, depth);
            }
        }
        for keyword in [
            "not",
            "if",
            "contains",
            "patternProperties",
            "propertyNames",
            "dependencies",
        ] {
            if let Some(value) = c.keyword(keyword)
                && p.keyword(keyword) != Some(value)
            {
                self.add(
                    Verdict::CannotTell,
                    p,
                    &c.at(value, &[keyword]),
                    format!("what `{keyword}` asks"),
                    format!("a schema `{keyword}` cannot be compared with"),
                );
            }
        }
    }

    /// The producer fits an `anyOf` when it fits one branch. When it fits none,
    /// it is a "no" only if no branch shares a type with it: otherwise its values
    /// might be spread over several branches.
    fn consumer_union(
        &mut self,
        p: &Side,
        c: &Side,
        keyword: &str,
        branches: &[Value],
        depth: usize,
    ) {
        let mut answers = Vec::with_capacity(branches.len());
        for (i, branch) in branches.iter().enumerate() {
            let index = i.to_string();
            let side = c.at(branch, &[keyword, &index]);
            let found = self.apart(|walk| walk.check(p, &side, depth + 1));
            let verdict = Fit {
                findings: found.clone(),
            }
            .verdict();
            let disjoint = self.types_disjoint(p, &side);
            answers.push((verdict, disjoint, found));
        }
        let fitting = answers.iter().filter(|(v, ..)| *v == Verdict::Yes).count();
        let overlapping = answers
            .iter()
            .filter(|(v, disjoint, _)| *v != Verdict::Yes && !*disjoint)
            .count();
        match (keyword, fitting) {
            ("anyOf", 1..) => {}
            ("oneOf", 1) if overlapping == 0 => {}
            ("oneOf", 1..) => self.add(
                Verdict::CannotTell,
                p,
                c,
                "values that match exactly one branch of oneOf".into(),
                "values that may match more than one".into(),
            ),
            _ => {
                let verdict = if overlapping == 0 {
                    Verdict::No
                } else {
                    Verdict::CannotTell
                };
                let best = answers
                    .into_iter()
                    .filter(|(_, disjoint, _)| !*disjoint)
                    .flat_map(|(_, _, found)| found)
                    .next();
                let found = best.map_or_else(|| "values of other types".into(), |f| f.found);
                self.add(
                    verdict,
                    p,
                    c,
                    format!("values that match a branch of {keyword}"),
                    found,
                );
            }
        }
    }

    fn types_disjoint(&mut self, p: &Side, c: &Side) -> bool {
        let (Some(p), Some(c)) = (
            self.resolved(p, c, true).as_ref().and_then(types),
            self.resolved(c, p, false).as_ref().and_then(types),
        ) else {
            return false;
        };
        p.iter()
            .all(|t| !(takes(&c, t) || (*t == "number" && c.contains("integer"))))
    }

    /// A producer that names its values (`const`, `enum`) fits when the consumer
    /// takes each of them, which is decided by validating them.
    fn producer_values(&mut self, p: &Side, c: &Side) -> bool {
        let values: Vec<&Value> = match (p.keyword("const"), p.keyword("enum")) {
            (Some(value), _) => vec![value],
            (_, Some(Value::Array(values))) => values.iter().collect(),
            _ => return false,
        };
        if c.schema.to_string().contains("\"$ref\"") {
            // A consumer that refers elsewhere is walked instead.
            return false;
        }
        let validator = jsonschema::draft7::options()
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(c.schema);
        let Ok(validator) = validator else {
            self.add(
                Verdict::CannotTell,
                p,
                c,
                "a schema that compiles".into(),
                "a consumer schema the validator refuses".into(),
            );
            return true;
        };
        for value in values {
            if !validator.is_valid(value) {
                self.add(
                    Verdict::No,
                    p,
                    c,
                    format!("what {} admits", c.pointer()),
                    format!("the value {value}"),
                );
            }
        }
        true
    }

    /// The types the producer may send that the consumer takes; None when there
    /// is nothing more to compare (the types do not fit at all).
    fn check_types(&mut self, p: &Side, c: &Side) -> Option<BTreeSet<&'static str>> {
        let produced = types(p).unwrap_or_else(|| TYPES.iter().copied().collect());
        let Some(taken) = types(c) else {
            return Some(produced);
        };
        let refused: BTreeSet<&str> = produced
            .iter()
            .copied()
            .filter(|t| !takes(&taken, t))
            .collect();
        if !refused.is_empty() {
            let found = if types(p).is_none() {
                "any type".to_string()
            } else {
                list(&refused)
            };
            self.add(Verdict::No, p, c, list(&taken), found);
        }
        let kept: BTreeSet<&str> = produced.difference(&refused).copied().collect();
        (!kept.is_empty()).then_some(kept)
    }

    /// A consumer that names its values: the producer must name them too (a
    /// producer of only `null`, or of booleans when both are named, is enough).
    fn consumer_values(&mut self, p: &Side, c: &Side, kinds: &BTreeSet<&str>) -> bool {
        let named: Vec<&Value> = match (c.keyword("const"), c.keyword("enum")) {
            (Some(value), _) => vec![value],
            (_, Some(Value::Array(values))) => values.iter().collect(),
            _ => return false,
        };
        let covered = kinds.iter().all(|kind| match *kind {
            "null" => named.contains(&&Value::Null),
            "boolean" => named.contains(&&json!(true)) && named.contains(&&json!(false)),
            _ => false,
        });
        if !covered {
            let expected: Vec<String> = named.iter().map(ToString::to_string).collect();
            self.add(
                Verdict::No,
                p,
                c,
                format!("one of {}", expected.join(", ")),
                format!("any {}", list(kinds)),
            );
        }
        true
    }
}
