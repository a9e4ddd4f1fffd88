//! Whatever the domain accepts, both stores hold exactly: a value written through the service
//! in dual-write reads back byte-exact from legacy and from unified, on both backends — dates
//! over the whole accepted range, numbers to numeric(20,5)'s last digit, units, lists, patterns.

use domain::EntityRef;
use flags::WriteMode;
use proptest::prelude::*;
use serde_json::{Value as Json, json};

use crate::common::{Backend, TestDb};
use crate::{LEGACY, UNIFIED, car_listing, dataset, object};

fn values() -> impl Strategy<Value = Json> {
    let mileage = (
        0i64..2_000_000,
        0u32..100_000,
        0u32..=5,
        prop::option::of(prop::sample::select(vec!["km", "mi", "m²", "км"])),
    )
        .prop_map(|(whole, fraction, scale, unit)| {
            let digits = format!("{fraction:05}");
            let number = if scale == 0 {
                whole.to_string()
            } else {
                format!("{whole}.{}", &digits[..scale as usize])
            };
            match unit {
                Some(unit) => json!({"value": number, "unit": unit}),
                None => json!(number),
            }
        });
    // Every day from 0001-01-01 to 9999-12-31.
    let registration = (0i64..3_652_059).prop_map(|days| {
        let first = chrono::NaiveDate::from_ymd_opt(1, 1, 1).expect("a date");
        json!(
            (first + chrono::Duration::days(days))
                .format("%Y-%m-%d")
                .to_string()
        )
    });
    let colours =
        prop::sample::subsequence(vec!["red", "blue", "black", "white"], 1..=4).prop_shuffle();
    (
        1950i64..=2026,
        mileage,
        registration,
        "[A-HJ-NPR-Z0-9]{17}",
        colours,
    )
        .prop_map(|(year, mileage, registration, vin, colours)| {
            json!({"year": year, "mileage": mileage, "first_registration": registration,
                   "vin": vin, "color": colours})
        })
}

fn round_trip(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (db, storage, car) = runtime.block_on(async {
        let db = TestDb::fresh(backend).await;
        let storage = db.storage().await;
        let data = dataset();
        storage.seed_legacy(&data).await.expect("seed");
        let car = EntityRef::listing(car_listing(&data));
        (db, storage, car)
    });
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20261204),
        ..ProptestConfig::default()
    };
    proptest!(config, |(input in values())| {
        runtime.block_on(async {
            let written = storage
                .write_values(car, storage::ValuesChange::Merge(&object(input.clone())), WriteMode::Dual)
                .await
                .unwrap_or_else(|e| panic!("{input}: {e:?}"))
                .data;
            for route in [LEGACY, UNIFIED] {
                let read = storage.entity_values(car, route).await.expect("read").data;
                for code in input.as_object().expect("object").keys() {
                    let (sent, back) = (&written[code], &read[code]);
                    assert_eq!(back, sent, "{code} through {route:?}: {input}");
                    assert_eq!(
                        back.value.to_json().to_string(),
                        sent.value.to_json().to_string(),
                        "{code} byte-exact through {route:?}"
                    );
                }
            }
        });
    });
    drop(db);
}

#[test]
fn every_value_the_domain_accepts_reads_back_exactly_from_both_stores_on_postgres() {
    round_trip(Backend::Postgres);
}

#[test]
fn every_value_the_domain_accepts_reads_back_exactly_from_both_stores_on_sqlite() {
    round_trip(Backend::Sqlite);
}
