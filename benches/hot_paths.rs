//! Criterion benchmarks of the functions on the hot read and write paths.

use std::hint::black_box;

use api::views::{CategoryAttributeView, EntityValuesView};
use criterion::{Criterion, criterion_group, criterion_main};
use domain::{EffectiveSchema, EntityRef, Language, parse_legacy_options, validate_replacement};
use flags::{ROLLOUT_GROUP, normalized_bucket};
use serde_json::json;
use storage::demo::Dataset;

/// The chain of the deepest demo leaf: electric sedans → sedans → cars → automotive.
const CHAIN: [i64; 4] = [1311, 1310, 1301, 1003];

fn schema_paths(c: &mut Criterion) {
    let data = Dataset::marketplace(200, 1);
    c.bench_function("effective_schema_resolve_leaf", |b| {
        b.iter(|| {
            EffectiveSchema::resolve(
                black_box(&CHAIN),
                black_box(&data.bindings),
                black_box(&data.attributes),
            )
        })
    });
    let schema = data.schema(1311);
    c.bench_function("category_view_serialize", |b| {
        b.iter(|| {
            let views: Vec<_> = schema
                .attributes
                .iter()
                .map(|a| CategoryAttributeView::of(a, Language::En))
                .collect();
            serde_json::to_vec(black_box(&views))
        })
    });
    let listing = data
        .listings
        .iter()
        .find(|l| l.category_id == 1311)
        .expect("a car listing");
    c.bench_function("entity_values_serialize", |b| {
        b.iter(|| {
            serde_json::to_vec(&EntityValuesView::of(
                EntityRef::listing(listing.id),
                black_box(&listing.values),
            ))
        })
    });
    let input = json!({"year": 2019, "car_make": "tesla", "mileage": {"value": 45000, "unit": "km"},
                       "color": ["red", "black"], "vin": "5YJ3E1EA7KF317000", "first_registration": "2019-03-01"});
    let input = input.as_object().expect("object").clone();
    c.bench_function("validate_replacement_car", |b| {
        b.iter(|| validate_replacement(black_box(&schema), black_box(&input)))
    });
}

fn legacy_and_flags(c: &mut Criterion) {
    let options = json!([{"label": "Automatski", "value": "automatic"}, {"label": "Manuelni", "value": "manual"},
                         {"label": "Poluautomatski", "value": "semi"}]);
    c.bench_function("parse_legacy_options_objects", |b| {
        b.iter(|| parse_legacy_options(black_box(&options)))
    });
    c.bench_function("rollout_bucket", |b| {
        b.iter(|| normalized_bucket(ROLLOUT_GROUP, black_box("user-1234567")))
    });
}

criterion_group!(benches, schema_paths, legacy_and_flags);
criterion_main!(benches);
