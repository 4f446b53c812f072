//! Property tests of the timestamp parser: any string is either a timestamp within the documented
//! range that reads back from its own printed form, or an error; never a panic.
//!
//! ```text
//! cargo test -p metrics-types --test timestamp_props
//! ```

#![allow(missing_docs, clippy::unwrap_used)]

use metrics_types::Timestamp;
use proptest::prelude::*;

/// Strings shaped like timestamps (most of them valid, many at the edges of the range), and
/// anything at all.
fn candidates() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "(0000|0001|9999|[0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([Tt ]([01][0-9]|2[0-4]):[0-5][0-9](:[0-6][0-9]([.,][0-9]{1,12})?)?( ?([Zz]|[+-]([01][0-9]|2[0-4])(:?[0-5][0-9])?))?)?",
        " ?[0-9 T:.,+Zz-]{0,30} ?",
    ]
}

fn check(input: &str) {
    let Ok(ts) = Timestamp::parse(input) else {
        return;
    };
    let micros = ts.timestamp_micros();
    assert!(
        (Timestamp::MIN_MICROS..=Timestamp::MAX_MICROS).contains(&micros),
        "{input:?} parsed to {micros} µs, outside the range"
    );
    // Its printed form reads back to the same instant and offset, and prints the same.
    let printed = ts.to_string();
    let again = Timestamp::parse(&printed)
        .unwrap_or_else(|err| panic!("{input:?} printed as {printed:?}, which fails: {err}"));
    assert_eq!(again.as_datetime(), ts.as_datetime());
    assert_eq!(again.as_datetime().offset(), ts.as_datetime().offset());
    assert_eq!(again.to_string(), printed);
    // And through serde, as the SDK sends it.
    let json = serde_json::to_string(&ts).unwrap();
    assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), ts);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_string_is_a_timestamp_in_range_that_round_trips_or_an_error(input in candidates()) {
        check(&input);
    }
}

#[test]
fn the_edges_of_the_range() {
    for input in [
        "0001-01-01",
        "0000-12-31T23:00:00-01:00",
        "9999-12-31T23:59:59.999999999",
        "9999-12-31T23:59:59.999999999+23:59",
    ] {
        check(input);
        assert!(Timestamp::parse(input).is_ok(), "{input}");
    }
    for input in [
        "0000-12-31T23:59:59Z",
        "9999-12-31T23:59:59.999999999-00:01",
    ] {
        assert!(Timestamp::parse(input).is_err(), "{input}");
    }
}
