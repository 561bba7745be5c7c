//! The rules by kind of value: numbers, strings, objects and arrays, each a
//! consumer's keywords against the producer's; and how a producer's `allOf` is
//! merged into one schema.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::{Side, Verdict, Walk, types};

/// A bound on numbers, lengths or counts: its value and whether it is exclusive.
#[derive(Clone, Copy)]
struct Bound {
    at: f64,
    exclusive: bool,
}

fn number(value: Option<&Value>) -> Option<f64> {
    value?.as_f64()
}

/// A schema's tightest bound on one side, from its inclusive and its exclusive
/// keyword (`low`: the lower bound, else the upper).
fn bound_of(side: &Side, inclusive: &str, exclusive: &str, low: bool) -> Option<Bound> {
    let a = number(side.keyword(inclusive)).map(|at| Bound {
        at,
        exclusive: false,
    });
    let b = number(side.keyword(exclusive)).map(|at| Bound {
        at,
        exclusive: true,
    });
    match (a, b) {
        (Some(a), Some(b)) => {
            // The exclusive one wins a tie: it is the tighter.
            let exclusive_tighter = if low { b.at >= a.at } else { b.at <= a.at };
            Some(if exclusive_tighter { b } else { a })
        }
        (a, b) => a.or(b),
    }
}

fn lower(side: &Side, inclusive: &str, exclusive: &str) -> Option<Bound> {
    bound_of(side, inclusive, exclusive, true)
}

fn upper(side: &Side, inclusive: &str, exclusive: &str) -> Option<Bound> {
    bound_of(side, inclusive, exclusive, false)
}

impl Walk<'_> {
    /// The consumer's bound `keyword` against the producer's: the producer's must
    /// be at least as tight.
    fn bound(
        &mut self,
        p: &Side,
        c: &Side,
        what: &str,
        theirs: Option<Bound>,
        ours: Option<Bound>,
        low: bool,
    ) {
        let Some(needed) = theirs else { return };
        let tight_enough = ours.is_some_and(|have| {
            if low {
                have.at > needed.at
                    || (have.at == needed.at && (have.exclusive || !needed.exclusive))
            } else {
                have.at < needed.at
                    || (have.at == needed.at && (have.exclusive || !needed.exclusive))
            }
        });
        if !tight_enough {
            let say = |b: Bound| {
                let op = match (low, b.exclusive) {
                    (true, false) => ">=",
                    (true, true) => ">",
                    (false, false) => "<=",
                    (false, true) => "<",
                };
                format!("{what} {op} {}", b.at)
            };
            let found = ours.map_or_else(|| format!("any {what}"), say);
            self.add(Verdict::No, p, c, say(needed), found);
        }
    }

    pub(super) fn numbers(&mut self, p: &Side, c: &Side) {
        let (pl, cl) = (
            lower(p, "minimum", "exclusiveMinimum"),
            lower(c, "minimum", "exclusiveMinimum"),
        );
        self.bound(p, c, "number", cl, pl, true);
        let (pu, cu) = (
            upper(p, "maximum", "exclusiveMaximum"),
            upper(c, "maximum", "exclusiveMaximum"),
        );
        self.bound(p, c, "number", cu, pu, false);
        if let Some(step) = number(c.keyword("multipleOf")) {
            let integers_only = types(p).is_some_and(|t| t.iter().all(|t| *t == "integer"));
            let ok = match number(p.keyword("multipleOf")) {
                Some(ours) => (ours / step).fract() == 0.0,
                None => integers_only && step == 1.0,
            };
            if !ok {
                self.add(
                    Verdict::No,
                    p,
                    c,
                    format!("a multiple of {step}"),
                    number(p.keyword("multipleOf"))
                        .map_or_else(|| "any number".into(), |m| format!("a multiple of {m}")),
                );
            }
        }
    }

    fn count_bounds(&mut self, p: &Side, c: &Side, what: &str, min: &str, max: &str) {
        let bound = |side: &Side, k: &str| {
            number(side.keyword(k)).map(|at| Bound {
                at,
                exclusive: false,
            })
        };
        self.bound(p, c, what, bound(c, min), bound(p, min), true);
        self.bound(p, c, what, bound(c, max), bound(p, max), false);
    }

    pub(super) fn strings(&mut self, p: &Side, c: &Side) {
        self.count_bounds(p, c, "length", "minLength", "maxLength");
        for keyword in ["pattern", "format"] {
            if let Some(wanted) = c.keyword(keyword)
                && p.keyword(keyword) != Some(wanted)
            {
                let found = p.keyword(keyword).map_or_else(
                    || format!("any string (no {keyword})"),
                    |v| format!("{keyword} {v}"),
                );
                self.add(
                    Verdict::CannotTell,
                    p,
                    &c.at(wanted, &[keyword]),
                    format!("{keyword} {wanted}"),
                    found,
                );
            }
        }
    }

    pub(super) fn objects(&mut self, p: &Side, c: &Side, depth: usize) {
        let empty = Map::new();
        let p_props = p
            .keyword("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let c_props = c
            .keyword("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let p_required: BTreeSet<&str> = p
            .keyword("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(Value::Array(required)) = c.keyword("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !p_required.contains(name) {
                    self.add(
                        Verdict::No,
                        p,
                        &c.at(&Value::Null, &["required"]),
                        format!("property {name:?} always present"),
                        format!("an object where {name:?} may be missing"),
                    );
                }
            }
        }
        let p_more = p.keyword("additionalProperties");
        let p_patterns = p.keyword("patternProperties").is_some();
        let always_true = Value::Bool(true);
        for (name, wanted) in c_props {
            let consumer = c.at(wanted, &["properties", name]);
            match (p_props.get(name), p_more) {
                (Some(sent), _) => {
                    self.check(&p.at(sent, &["properties", name]), &consumer, depth + 1)
                }
                (None, Some(Value::Bool(false))) if !p_patterns => {}
                (None, _) if p_patterns => self.add(
                    Verdict::CannotTell,
                    p,
                    &consumer,
                    format!("property {name:?} as declared"),
                    "properties matched by patternProperties".into(),
                ),
                (None, more) => {
                    let sent = more.unwrap_or(&always_true);
                    let side = p.at(sent, &["additionalProperties"]);
                    self.check(&side, &consumer, depth + 1);
                }
            }
        }
        match c.keyword("additionalProperties") {
            None | Some(Value::Bool(true)) => {}
            Some(more) => {
                let consumer = c.at(more, &["additionalProperties"]);
                for (name, sent) in p_props {
                    if !c_props.contains_key(name) {
                        self.check(&p.at(sent, &["properties", name]), &consumer, depth + 1);
                    }
                }
                if p_patterns {
                    self.add(
                        Verdict::CannotTell,
                        p,
                        &consumer,
                        "only the properties the consumer declares".into(),
                        "properties matched by patternProperties".into(),
                    );
                }
                match p_more {
                    Some(Value::Bool(false)) => {}
                    sent => {
                        let side = p.at(sent.unwrap_or(&always_true), &["additionalProperties"]);
                        self.check(&side, &consumer, depth + 1);
                    }
                }
            }
        }
        self.count_bounds(p, c, "property count", "minProperties", "maxProperties");
    }

    pub(super) fn arrays(&mut self, p: &Side, c: &Side, depth: usize) {
        let always_true = Value::Bool(true);
        match c.keyword("items") {
            None => {}
            Some(Value::Array(tuple))
                if p.keyword("items") != Some(&Value::Array(tuple.clone())) =>
            {
                self.add(
                    Verdict::CannotTell,
                    p,
                    &c.at(&Value::Null, &["items"]),
                    "items as a tuple".into(),
                    "items of another shape".into(),
                );
            }
            Some(Value::Array(_)) => {}
            Some(wanted) => {
                let consumer = c.at(wanted, &["items"]);
                match p.keyword("items") {
                    Some(Value::Array(tuple)) => {
                        for (i, sent) in tuple.iter().enumerate() {
                            let index = i.to_string();
                            self.check(&p.at(sent, &["items", &index]), &consumer, depth + 1);
                        }
                        let rest = p.keyword("additionalItems").unwrap_or(&always_true);
                        self.check(&p.at(rest, &["additionalItems"]), &consumer, depth + 1);
                    }
                    sent => {
                        let side = p.at(sent.unwrap_or(&always_true), &["items"]);
                        self.check(&side, &consumer, depth + 1);
                    }
                }
            }
        }
        self.count_bounds(p, c, "item count", "minItems", "maxItems");
        if c.keyword("uniqueItems") == Some(&Value::Bool(true))
            && p.keyword("uniqueItems") != Some(&Value::Bool(true))
        {
            self.add(
                Verdict::No,
                p,
                c,
                "unique items".into(),
                "items that may repeat".into(),
            );
        }
    }
}

/// Adds `keywords` (one branch of an `allOf`) to `merged`: required properties and
/// declared properties join (a property both declare must fit both), types meet,
/// and of any other keyword the first stays (dropping one only widens the merge).
pub(super) fn merge(merged: &mut Map<String, Value>, keywords: &Map<String, Value>) {
    for (name, value) in keywords {
        match (name.as_str(), merged.get_mut(name)) {
            (_, None) => {
                merged.insert(name.clone(), value.clone());
            }
            ("required", Some(Value::Array(have))) => {
                for r in value.as_array().into_iter().flatten() {
                    if !have.contains(r) {
                        have.push(r.clone());
                    }
                }
            }
            ("properties", Some(Value::Object(have))) => {
                for (prop, schema) in value.as_object().into_iter().flatten() {
                    match have.get_mut(prop) {
                        None => {
                            have.insert(prop.clone(), schema.clone());
                        }
                        Some(existing) => {
                            *existing = json!({ "allOf": [existing.clone(), schema.clone()] });
                        }
                    }
                }
            }
            ("type", Some(have)) => {
                let as_set = |v: &Value| -> BTreeSet<String> {
                    match v {
                        Value::String(s) => [s.clone()].into(),
                        Value::Array(l) => l
                            .iter()
                            .filter_map(|t| Some(t.as_str()?.to_string()))
                            .collect(),
                        _ => BTreeSet::new(),
                    }
                };
                let (a, b) = (as_set(have), as_set(value));
                let mut both: BTreeSet<String> = a.intersection(&b).cloned().collect();
                // An integer is a number: integer meets number as integer.
                if (a.contains("number") && b.contains("integer"))
                    || (a.contains("integer") && b.contains("number"))
                {
                    both.insert("integer".into());
                }
                *have = Value::Array(both.into_iter().map(Value::String).collect());
            }
            _ => {}
        }
    }
}
