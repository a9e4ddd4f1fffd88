//! The Day-15 database over HTTP (tests/fixtures/day15): once the backfill took the
//! marketplace's own unified tables as a source and reads are unified, its definitions are
//! served for their categories and its values for their listings, in the v1 and the v2 shapes,
//! with their labels.

use flags::{Flags, WriteMode};
use serde_json::Value as Json;

use crate::common::{Backend, TestDb, accept_all_quarantined, backfill_and_verify};
use crate::helpers::serve_as_is;

const SCHEMA: &str = include_str!("../fixtures/legacy_2025_08/schema.sql");
const DATA: &str = include_str!("../fixtures/legacy_2025_08/data.sql");
const MONOLITH: &str = include_str!("../fixtures/day15/monolith.sql");

fn find<'a>(list: &'a Json, key: &str, code: &str) -> &'a Json {
    list["data"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|item| item[key] == code)
        .unwrap_or_else(|| panic!("{code} missing: {list}"))
}

#[actix_web::test]
async fn the_monoliths_definitions_and_values_are_served_in_both_api_versions() {
    let db = TestDb::fresh(Backend::Postgres).await;
    let raw = db.raw().await;
    for sql in [SCHEMA, DATA, MONOLITH] {
        raw.execute(sql).await;
    }
    let storage = db.storage().await;
    storage
        .note_write_mode(WriteMode::Dual)
        .await
        .expect("dual-write");
    backfill_and_verify(&storage).await;
    accept_all_quarantined(&storage).await;
    storage
        .change_flags(Flags::default(), "ops", |_| Flags {
            use_unified: true,
            unified_percent: 100,
            fallback: false,
            dual_write: true,
            shadow_percent: 0,
        })
        .await
        .expect("unified reads");
    let app = serve_as_is(db.share(), &[]).await;

    let v1 = app
        .get("/api/v1/marketplace/categories/1011/attributes?lang=en")
        .await;
    assert_eq!(v1.status, 200, "{}", v1.body);
    let pet_type = find(&v1.body, "name", "pet_type");
    assert_eq!(pet_type["display_name"], "Pet Type");
    assert_eq!(pet_type["is_required"], true);
    let v2 = app
        .get("/api/v2/marketplace/categories/1011/attributes?lang=sr")
        .await;
    assert_eq!(v2.status, 200, "{}", v2.body);
    let pet_type = find(&v2.body, "code", "pet_type");
    assert!(
        pet_type.to_string().contains("Tip životinje"),
        "its Serbian label: {pet_type}"
    );
    let cars = app
        .get("/api/v1/marketplace/categories/1301/attributes?lang=en")
        .await;
    find(&cars.body, "name", "auto_part_brand");

    let v1 = app
        .get("/api/v1/marketplace/listings/104/attributes?lang=en")
        .await;
    assert_eq!(v1.status, 200, "{}", v1.body);
    assert_eq!(
        find(&v1.body, "attribute_name", "book_author")["text_value"],
        "Ivo Andrić"
    );
    let v2 = app.get("/api/v2/marketplace/listings/104/attributes").await;
    assert_eq!(v2.status, 200, "{}", v2.body);
    assert!(
        v2.body.to_string().contains("978-86-521-0001-1"),
        "its ISBN: {}",
        v2.body
    );
    let passat = app.get("/api/v2/marketplace/listings/102/attributes").await;
    assert!(
        passat.body.to_string().contains("petrol"),
        "the newer of the conflicting values: {}",
        passat.body
    );
}
