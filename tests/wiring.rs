//! Submit-time checks of a step's references against its producers' output
//! contracts and its own input contract.

use jobqueue::chain::reference::Source;
use jobqueue::chain::wiring::{Promises, check_template};
use jobqueue::contract::compat::{NoRegistry, Verdict};
use serde_json::{Value, json};

/// The chain's input and one finished step, `fetch`, with these contracts.
struct Contracts {
    input: Option<Value>,
    fetch: Option<Value>,
}

impl Promises for Contracts {
    fn schema_of(&self, source: &Source) -> Option<Value> {
        match source {
            Source::Input => self.input.clone(),
            Source::Body(step) if step == "fetch" => self.fetch.clone(),
            Source::BodyAt(0) => self.fetch.clone(),
            _ => None,
        }
    }
}

fn fetch_output() -> Value {
    json!({
        "type": "object",
        "required": ["items", "total"],
        "properties": {
            "items": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["id"],
                "properties": {"id": {"type": "integer"}, "label": {"type": "string"}}
            }},
            "total": {"type": "number"},
            "maybe": {"type": "string"}
        }
    })
}

fn store_input() -> Value {
    json!({
        "type": "object",
        "required": ["order_id"],
        "properties": {
            "order_id": {"type": "number"},
            "label": {"type": "string"},
            "ids": {"type": "array", "items": {"type": "integer"}}
        }
    })
}

fn contracts() -> Contracts {
    Contracts {
        input: Some(
            json!({"type": "object", "required": ["who"], "properties": {"who": {"type": "string"}}}),
        ),
        fetch: Some(fetch_output()),
    }
}

fn verdicts(template: Value) -> Vec<(String, Verdict)> {
    check_template(&template, Some(&store_input()), &contracts(), &NoRegistry)
        .into_iter()
        .map(|w| (w.at, w.verdict))
        .collect()
}

#[test]
fn references_to_guaranteed_properties_of_a_fitting_type_fit() {
    let wires = verdicts(json!({
        "order_id": "{{ steps.fetch.output.body.items[0].id }}",
        "label": "for {{ input.who }}: {{ tasks[0].output_data.total }} in all",
        "status": "{{ steps.fetch.output.status }}"
    }));
    assert_eq!(
        wires,
        [
            ("/label".to_string(), Verdict::Yes),
            ("/label".to_string(), Verdict::Yes),
            ("/order_id".to_string(), Verdict::Yes),
            ("/status".to_string(), Verdict::Yes),
        ]
    );
}

#[test]
fn a_property_the_producer_does_not_guarantee_is_a_mismatch_with_its_pointer() {
    let template = json!({"order_id": 1, "label": "{{ steps.fetch.output.body.maybe }}"});
    let wires = check_template(&template, Some(&store_input()), &contracts(), &NoRegistry);
    assert_eq!(wires.len(), 1);
    assert_eq!(wires[0].verdict, Verdict::No);
    assert_eq!(wires[0].reference, "steps.fetch.output.body.maybe");
    assert_eq!(wires[0].findings[0].producer, "/");
    assert!(
        wires[0].findings[0].expected.contains("required"),
        "{:?}",
        wires[0]
    );
    // Undeclared altogether.
    let wires = verdicts(json!({"order_id": "{{ steps.fetch.output.body.nothing }}"}));
    assert_eq!(wires[0].1, Verdict::No);
    // An index past what the array guarantees.
    let wires = verdicts(json!({"order_id": "{{ steps.fetch.output.body.items[1].id }}"}));
    assert_eq!(wires[0].1, Verdict::No);
}

#[test]
fn a_type_that_does_not_fit_the_consumer_is_a_mismatch() {
    // A string where a number is expected.
    let template = json!({"order_id": "{{ steps.fetch.output.body.items[0].label }}"});
    let wires = check_template(&template, Some(&store_input()), &contracts(), &NoRegistry);
    assert_eq!(wires[0].verdict, Verdict::No);
    // A label is optional in the producer: not guaranteed.
    assert!(
        wires[0].findings[0].expected.contains("label"),
        "{:?}",
        wires[0]
    );
    let template = json!({"order_id": "{{ input.who }}"});
    let wires = check_template(&template, Some(&store_input()), &contracts(), &NoRegistry);
    assert_eq!(wires[0].verdict, Verdict::No);
    assert_eq!(
        (
            wires[0].findings[0].expected.as_str(),
            wires[0].findings[0].found.as_str()
        ),
        ("number", "string")
    );
    // An array inside a string.
    let wires =
        verdicts(json!({"order_id": 1, "label": "ids: {{ steps.fetch.output.body.items }}"}));
    assert_eq!(wires[0].1, Verdict::No);
    // A whole array where an array of integers is expected: its items must fit.
    let wires = verdicts(json!({"order_id": 1, "ids": "{{ steps.fetch.output.body.items }}"}));
    assert_eq!(wires[0].1, Verdict::No);
}

#[test]
fn a_producer_without_an_output_contract_cannot_be_told() {
    let none = Contracts {
        input: None,
        fetch: None,
    };
    let template = json!({"order_id": "{{ steps.fetch.output.body.id }}"});
    let wires = check_template(&template, Some(&store_input()), &none, &NoRegistry);
    assert_eq!(wires[0].verdict, Verdict::CannotTell);
    // A consumer without an input contract takes whatever is guaranteed.
    let wires = check_template(&template, None, &contracts(), &NoRegistry);
    assert_eq!(wires[0].verdict, Verdict::No, "id is still not guaranteed");
    let ok = json!({"anything": "{{ steps.fetch.output.body.total }}"});
    let wires = check_template(&ok, None, &contracts(), &NoRegistry);
    assert_eq!(wires[0].verdict, Verdict::Yes);
}
