//! The schema compatibility checker, rule by rule, and against a second opinion:
//! the `jsonschema` crate's experimental containment check, wherever it answers.

use jobqueue::contract::compat::{Fit, NoRegistry, Resolve, Verdict, fits};
use serde_json::{Value, json};

fn check(producer: Value, consumer: Value) -> Fit {
    fits(&producer, &consumer, &NoRegistry)
}

fn verdict(producer: Value, consumer: Value) -> Verdict {
    check(producer, consumer).verdict()
}

#[test]
fn types_fit_when_every_type_sent_is_taken_and_integers_are_numbers() {
    assert_eq!(
        verdict(json!({"type": "integer"}), json!({"type": "number"})),
        Verdict::Yes
    );
    assert_eq!(
        verdict(json!({"type": "number"}), json!({"type": "integer"})),
        Verdict::No
    );
    assert_eq!(
        verdict(
            json!({"type": "string"}),
            json!({"type": ["string", "null"]})
        ),
        Verdict::Yes
    );
    // A null the producer allows and the consumer does not.
    let fit = check(
        json!({"type": ["string", "null"]}),
        json!({"type": "string"}),
    );
    assert_eq!(fit.verdict(), Verdict::No);
    assert_eq!(fit.findings[0].found, "null");
    assert_eq!(fit.findings[0].expected, "string");
    // A producer that says nothing may send anything.
    assert_eq!(verdict(json!({}), json!({"type": "string"})), Verdict::No);
    assert_eq!(verdict(json!(true), json!({})), Verdict::Yes);
    assert_eq!(
        verdict(json!({"type": "string"}), json!(false)),
        Verdict::No
    );
    assert_eq!(
        verdict(json!(false), json!({"type": "string"})),
        Verdict::Yes
    );
}

#[test]
fn required_properties_must_be_guaranteed_and_are_named_with_their_pointers() {
    let producer = json!({
        "type": "object",
        "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
        "required": ["name"]
    });
    let consumer = json!({
        "type": "object",
        "properties": {"id": {"type": "integer"}},
        "required": ["id"]
    });
    let fit = check(producer.clone(), consumer);
    assert_eq!(fit.verdict(), Verdict::No);
    let finding = &fit.findings[0];
    assert_eq!(finding.consumer, "/required");
    assert_eq!(finding.producer, "/");
    assert!(finding.expected.contains("\"id\""), "{finding:?}");
    let both = json!({"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id", "name"]});
    assert_eq!(
        verdict(both, json!({"type": "object", "required": ["id"]})),
        Verdict::Yes
    );
}

#[test]
fn nested_objects_and_arrays_report_the_pointer_of_the_mismatch() {
    let producer = json!({
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": {
            "type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}
        }}}
    });
    let consumer = json!({
        "type": "object",
        "properties": {"items": {"type": "array", "items": {
            "type": "object", "properties": {"id": {"type": "integer"}}
        }}}
    });
    let fit = check(producer, consumer);
    assert_eq!(fit.verdict(), Verdict::No);
    let finding = &fit.findings[0];
    assert_eq!(finding.producer, "/properties/items/items/properties/id");
    assert_eq!(finding.consumer, "/properties/items/items/properties/id");
    assert_eq!(
        (finding.expected.as_str(), finding.found.as_str()),
        ("integer", "string")
    );
    // An array whose items are unconstrained cannot promise integers.
    assert_eq!(
        verdict(
            json!({"type": "array"}),
            json!({"type": "array", "items": {"type": "integer"}})
        ),
        Verdict::No
    );
}

#[test]
fn closed_objects_take_only_what_they_declare() {
    let closed = json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false});
    let open = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    assert_eq!(verdict(open.clone(), closed.clone()), Verdict::No);
    assert_eq!(verdict(closed.clone(), open.clone()), Verdict::Yes);
    assert_eq!(verdict(closed.clone(), closed.clone()), Verdict::Yes);
    let extra = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {}}, "additionalProperties": false});
    assert_eq!(verdict(extra, closed), Verdict::No);
    // A property the consumer types but the producer does not declare may be anything.
    assert_eq!(
        verdict(
            json!({"type": "object"}),
            json!({"type": "object", "properties": {"a": {"type": "string"}}})
        ),
        Verdict::No
    );
}

#[test]
fn enums_and_consts_fit_when_every_named_value_is_taken() {
    assert_eq!(
        verdict(
            json!({"enum": ["a", "b"]}),
            json!({"enum": ["a", "b", "c"]})
        ),
        Verdict::Yes
    );
    assert_eq!(
        verdict(json!({"enum": ["a", "z"]}), json!({"enum": ["a", "b"]})),
        Verdict::No
    );
    assert_eq!(
        verdict(
            json!({"const": 3}),
            json!({"type": "integer", "minimum": 1})
        ),
        Verdict::Yes
    );
    assert_eq!(
        verdict(json!({"type": "string"}), json!({"enum": ["a"]})),
        Verdict::No
    );
    assert_eq!(
        verdict(json!({"type": "boolean"}), json!({"enum": [true, false]})),
        Verdict::Yes
    );
    assert_eq!(
        verdict(json!({"const": "x"}), json!({"const": "x"})),
        Verdict::Yes
    );
}

#[test]
fn numeric_and_length_bounds_must_be_at_least_as_tight() {
    let c = json!({"type": "integer", "minimum": 0, "maximum": 100});
    assert_eq!(
        verdict(
            json!({"type": "integer", "minimum": 1, "maximum": 10}),
            c.clone()
        ),
        Verdict::Yes
    );
    assert_eq!(
        verdict(
            json!({"type": "integer", "minimum": -1, "maximum": 10}),
            c.clone()
        ),
        Verdict::No
    );
    assert_eq!(verdict(json!({"type": "integer"}), c.clone()), Verdict::No);
    assert_eq!(
        verdict(
            json!({"type": "number", "exclusiveMinimum": 0}),
            json!({"type": "number", "minimum": 0})
        ),
        Verdict::Yes
    );
    assert_eq!(
        verdict(
            json!({"type": "number", "minimum": 0}),
            json!({"type": "number", "exclusiveMinimum": 0})
        ),
        Verdict::No
    );
    assert_eq!(
        verdict(
            json!({"type": "integer", "multipleOf": 4}),
            json!({"type": "integer", "multipleOf": 2})
        ),
        Verdict::Yes
    );
    assert_eq!(
        verdict(
            json!({"type": "integer", "multipleOf": 4}),
            json!({"type": "integer", "multipleOf": 3})
        ),
        Verdict::No
    );
    let s = json!({"type": "string", "minLength": 1, "maxLength": 10});
    assert_eq!(
        verdict(
            json!({"type": "string", "minLength": 2, "maxLength": 5}),
            s.clone()
        ),
        Verdict::Yes
    );
    assert_eq!(
        verdict(json!({"type": "string", "maxLength": 5}), s.clone()),
        Verdict::No
    );
    let a = json!({"type": "array", "minItems": 1});
    assert_eq!(
        verdict(
            json!({"type": "array", "minItems": 1, "maxItems": 3}),
            a.clone()
        ),
        Verdict::Yes
    );
    assert_eq!(verdict(json!({"type": "array"}), a), Verdict::No);
    assert_eq!(
        verdict(
            json!({"type": "array"}),
            json!({"type": "array", "uniqueItems": true})
        ),
        Verdict::No
    );
}

#[test]
fn unions_and_intersections() {
    // A producer union fits when each branch does.
    let p = json!({"anyOf": [{"type": "integer"}, {"type": "string"}]});
    assert_eq!(
        verdict(p.clone(), json!({"type": ["integer", "string"]})),
        Verdict::Yes
    );
    assert_eq!(verdict(p.clone(), json!({"type": "integer"})), Verdict::No);
    // A consumer union takes a producer that fits one branch.
    let c = json!({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 3}]});
    assert_eq!(
        verdict(json!({"type": "integer", "minimum": 0}), c.clone()),
        Verdict::Yes
    );
    assert_eq!(verdict(json!({"type": "boolean"}), c.clone()), Verdict::No);
    // Spread over branches of the same type: not provable either way.
    let split =
        json!({"anyOf": [{"type": "integer", "minimum": 0}, {"type": "integer", "maximum": 0}]});
    assert_eq!(
        verdict(json!({"type": "integer"}), split),
        Verdict::CannotTell
    );
    // oneOf: exactly one branch, the others disjoint.
    let one = json!({"oneOf": [{"type": "integer"}, {"type": "string"}]});
    assert_eq!(verdict(json!({"type": "integer"}), one), Verdict::Yes);
    let overlapping = json!({"oneOf": [{"type": "number"}, {"type": "integer"}]});
    assert_eq!(
        verdict(json!({"type": "integer"}), overlapping),
        Verdict::CannotTell
    );
    // allOf on the consumer: each branch; on the producer: merged.
    let all = json!({"allOf": [{"type": "object", "required": ["a"]}, {"required": ["b"]}]});
    let p = json!({"type": "object", "required": ["a", "b"]});
    assert_eq!(verdict(p.clone(), all.clone()), Verdict::Yes);
    assert_eq!(
        verdict(json!({"type": "object", "required": ["a"]}), all.clone()),
        Verdict::No
    );
    assert_eq!(
        verdict(all, json!({"type": "object", "required": ["a", "b"]})),
        Verdict::Yes
    );
}

#[test]
fn references_resolve_in_the_document_and_the_registry_only() {
    let c = json!({
        "definitions": {"id": {"type": "integer"}},
        "type": "object", "properties": {"id": {"$ref": "#/definitions/id"}}
    });
    let p = json!({"type": "object", "properties": {"id": {"type": "integer"}}});
    assert_eq!(verdict(p.clone(), c.clone()), Verdict::Yes);
    let wrong = json!({"type": "object", "properties": {"id": {"type": "string"}}});
    assert_eq!(verdict(wrong, c), Verdict::No);

    struct Registry(Value);
    impl Resolve for Registry {
        fn document(&self, uri: &str) -> Option<&Value> {
            (uri == "jobqueue:contract/ids/1").then_some(&self.0)
        }
    }
    let registry = Registry(json!({"definitions": {"id": {"type": "integer", "minimum": 1}}}));
    let c = json!({"$ref": "jobqueue:contract/ids/1#/definitions/id"});
    assert_eq!(
        fits(&json!({"type": "integer", "minimum": 5}), &c, &registry).verdict(),
        Verdict::Yes
    );
    assert_eq!(
        fits(&json!({"type": "integer"}), &c, &registry).verdict(),
        Verdict::No
    );
    // Anywhere else: refused, never fetched.
    let far = json!({"$ref": "https://example.com/schema.json"});
    let fit = fits(&json!({"type": "integer"}), &far, &registry);
    assert_eq!(fit.verdict(), Verdict::No);
    assert!(
        fit.findings[0].found.contains("example.com"),
        "{:?}",
        fit.findings
    );
    // A recursive schema ends.
    let tree = json!({"type": "object", "properties": {"child": {"$ref": "#"}}});
    assert_ne!(verdict(tree.clone(), tree), Verdict::No);
}

#[test]
fn patterns_formats_and_negations_cannot_be_told() {
    assert_eq!(
        verdict(
            json!({"type": "string"}),
            json!({"type": "string", "pattern": "^a"})
        ),
        Verdict::CannotTell
    );
    assert_eq!(
        verdict(
            json!({"type": "string", "pattern": "^a"}),
            json!({"type": "string", "pattern": "^a"})
        ),
        Verdict::Yes
    );
    assert_eq!(
        verdict(
            json!({"type": "string", "format": "date"}),
            json!({"type": "string", "format": "email"})
        ),
        Verdict::CannotTell
    );
    assert_eq!(
        verdict(
            json!({"type": "integer"}),
            json!({"not": {"type": "string"}})
        ),
        Verdict::CannotTell
    );
    // A named value is checked against the pattern itself.
    assert_eq!(
        verdict(
            json!({"const": "abc"}),
            json!({"type": "string", "pattern": "^a"})
        ),
        Verdict::Yes
    );
    assert_eq!(
        verdict(
            json!({"const": "xbc"}),
            json!({"type": "string", "pattern": "^a"})
        ),
        Verdict::No
    );
}

/// The pairs the cross-check runs: each as (producer, consumer).
fn pairs() -> Vec<(Value, Value)> {
    let schemas = [
        json!({"type": "integer"}),
        json!({"type": "number"}),
        json!({"type": "string"}),
        json!({"type": ["string", "null"]}),
        json!({"type": "integer", "minimum": 0}),
        json!({"type": "integer", "minimum": 0, "maximum": 10}),
        json!({"type": "number", "exclusiveMinimum": 0}),
        json!({"type": "string", "maxLength": 3}),
        json!({"type": "string", "minLength": 1}),
        json!({"enum": ["a", "b"]}),
        json!({"enum": ["a", "b", "c"]}),
        json!({"const": 1}),
        json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}),
        json!({"type": "object", "properties": {"a": {"type": "number"}}}),
        json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false}),
        json!({"type": "array", "items": {"type": "integer"}}),
        json!({"type": "array", "items": {"type": "number"}, "minItems": 1}),
        json!({"anyOf": [{"type": "integer"}, {"type": "string"}]}),
        json!({"type": "boolean"}),
        json!({}),
    ];
    let mut pairs = Vec::new();
    for p in &schemas {
        for c in &schemas {
            pairs.push((p.clone(), c.clone()));
        }
    }
    pairs
}

#[test]
fn the_checker_never_contradicts_the_second_opinion() {
    use jsonschema::canonical::Containment;
    let canonical = |v: &Value| {
        jsonschema::canonical::options()
            .with_draft(jsonschema::Draft::Draft7)
            .offline()
            .canonicalize(v)
            .expect("canonical form")
    };
    let (mut compared, mut agreed) = (0, 0);
    for (p, c) in pairs() {
        let ours = verdict(p.clone(), c.clone());
        let theirs = canonical(&c).covers(&canonical(&p)).expect("comparable");
        match (ours, theirs) {
            (Verdict::Yes, Containment::No) | (Verdict::No, Containment::Yes) => {
                panic!("{p} into {c}: ours {ours:?}, theirs {theirs:?}")
            }
            (_, Containment::Unknown) | (Verdict::CannotTell, _) => {}
            _ => agreed += 1,
        }
        compared += 1;
    }
    eprintln!("cross-check: {agreed} of {compared} pairs decided by both");
    // The second opinion answered most pairs, and ours agreed with each answer.
    assert_eq!(compared, 400);
    assert!(agreed > 300, "{agreed} of {compared} decided by both");
}
