//! A realistic marketplace dataset, built as domain objects so that it can be loaded in
//! legacy form (with the real data's defects) or in unified form, and both read back equal.
//!
//! Categories, attribute codes and id blocks mirror the real marketplace (LEGACY.md).

use std::collections::HashMap;

use chrono::NaiveDate;
use domain::{
    Attribute, AttributeOption, AttributeType, CategoryBinding, EffectiveSchema, EntityRef,
    EntityValues, Language, LocalizedText, Purpose, TypedValue, ValidationRules, Value,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

/// Unified ids from here up belong to attributes that have no C2C id.
pub const FIRST_UNIFIED_ONLY_ID: i64 = 1_000_000;

#[derive(Debug, Clone)]
pub struct Category {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
    pub slug: String,
    pub level: i32,
}

#[derive(Debug, Clone)]
pub struct Listing {
    pub id: i64,
    pub category_id: i64,
    pub title: String,
    pub values: EntityValues,
}

#[derive(Debug, Clone)]
pub struct Product {
    pub id: i64,
    pub category_id: i64,
    pub values: EntityValues,
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub id: i64,
    pub product_id: i64,
    pub values: EntityValues,
}

/// A B2C variant axis (`product_variant_attributes`) and its option catalogue.
#[derive(Debug, Clone)]
pub struct VariantAxis {
    pub legacy_id: i64,
    pub attribute: Attribute,
}

#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub categories: Vec<Category>,
    /// C2C definitions (`category_attributes`), ids in the real hand-assigned blocks.
    pub attributes: Vec<Attribute>,
    pub bindings: Vec<CategoryBinding>,
    pub variant_axes: Vec<VariantAxis>,
    pub listings: Vec<Listing>,
    pub products: Vec<Product>,
    pub variants: Vec<Variant>,
    /// In legacy form, also the defects a backfill must map or quarantine: option spellings
    /// in other case and script, unknown spellings, `year = 1` (see [`Dataset::with_all_defects`]).
    pub all_defects: bool,
}

const ROOTS: [(&str, &str); 20] = [
    ("Elektronika", "electronics"),
    ("Moda", "fashion"),
    ("Automobili", "automotive"),
    ("Nekretnine", "real-estate"),
    ("Kuća i bašta", "home-garden"),
    ("Sport", "sports"),
    ("Deca", "kids"),
    ("Knjige", "books"),
    ("Muzika", "music"),
    ("Kućni ljubimci", "pets"),
    ("Alati", "tools"),
    ("Usluge", "services"),
    ("Poslovi", "jobs"),
    ("Kolekcionarstvo", "collectibles"),
    ("Zdravlje i lepota", "health-beauty"),
    ("Hrana i piće", "food-drink"),
    ("Turizam", "travel"),
    ("Umetnost", "art"),
    ("Poljoprivreda", "agriculture"),
    ("Ostalo", "other"),
];

/// (id, parent, name, slug): the deeper branches the demo uses; leaves hold the listings.
const BRANCHES: [(i64, i64, &str, &str); 12] = [
    (1101, 1001, "Mobilni telefoni", "mobile-phones"),
    (1102, 1001, "Laptopovi", "laptops"),
    (1201, 1002, "Muška odeća", "mens-clothing"),
    (1202, 1002, "Ženska odeća", "womens-clothing"),
    (1301, 1003, "Putnička vozila", "cars"),
    (1302, 1003, "Motocikli", "motorcycles"),
    (1310, 1301, "Limuzine", "sedans"),
    (1311, 1310, "Električne limuzine", "electric-sedans"),
    (1401, 1004, "Stanovi", "apartments"),
    (1402, 1004, "Kuće", "houses"),
    (1410, 1401, "Garsonjere", "studio-apartments"),
    (1501, 1005, "Nameštaj", "furniture"),
];

/// Leaves that get listings, with the share of listings each gets (out of 12).
const LISTING_LEAVES: [(i64, usize); 8] = [
    (1101, 2),
    (1102, 1),
    (1201, 1),
    (1202, 1),
    (1311, 2),
    (1302, 1),
    (1410, 2),
    (1402, 2),
];

fn labels(sr: &str, en: &str, ru: &str) -> LocalizedText {
    LocalizedText::serbian(sr)
        .with(Language::En, en)
        .with(Language::Ru, ru)
}

/// Options whose Serbian label is their value, as legacy string lists had them.
fn plain_options(values: &[(&str, &str, &str)]) -> Vec<AttributeOption> {
    values
        .iter()
        .map(|(value, en, ru)| AttributeOption {
            value: (*value).to_owned(),
            label: labels(value, en, ru),
            color_hex: None,
            image_url: None,
            is_active: true,
            aliases: Vec::new(),
        })
        .collect()
}

fn definition(
    id: i64,
    code: &str,
    attribute_type: AttributeType,
    label: LocalizedText,
    sort_order: i32,
) -> Attribute {
    Attribute {
        name: label.clone(),
        display_name: label,
        sort_order,
        created_at: Some(demo_created_at(id)),
        ..Attribute::new(id, code, attribute_type)
    }
}

/// A fixed creation time per definition, so that both stores and every run agree.
fn demo_created_at(id: i64) -> chrono::DateTime<chrono::Utc> {
    let start = chrono::DateTime::from_timestamp(1_704_103_200, 0).unwrap_or_default();
    start + chrono::Duration::minutes(id % 10_000)
}

fn number_rules(min: i64, max: i64) -> ValidationRules {
    ValidationRules {
        min: Some(Decimal::from(min)),
        max: Some(Decimal::from(max)),
        ..Default::default()
    }
}

fn c2c_attributes() -> Vec<Attribute> {
    use AttributeType as T;
    let mut condition = definition(
        2002,
        "condition",
        T::Select,
        labels("Stanje", "Condition", "Состояние"),
        1,
    );
    condition.options = vec![
        AttributeOption {
            value: "new".into(),
            label: labels("Novo", "New", "Новое"),
            color_hex: None,
            image_url: None,
            is_active: true,
            aliases: Vec::new(),
        },
        AttributeOption {
            value: "used".into(),
            label: labels("Polovno", "Used", "Б/у"),
            color_hex: None,
            image_url: None,
            is_active: true,
            aliases: Vec::new(),
        },
    ];
    condition.is_filterable = true;
    let negotiable = definition(
        2003,
        "price_negotiable",
        T::Boolean,
        labels("Cena po dogovoru", "Negotiable price", "Цена договорная"),
        90,
    );
    let mut color = definition(
        2004,
        "color",
        T::Multiselect,
        labels("Boja", "Color", "Цвет"),
        5,
    );
    color.options = [
        ("red", "Crvena", "Red", "Красный", "#d32f2f"),
        ("blue", "Plava", "Blue", "Синий", "#1976d2"),
        ("black", "Crna", "Black", "Чёрный", "#000000"),
        ("white", "Bela", "White", "Белый", "#ffffff"),
    ]
    .iter()
    .map(|(value, sr, en, ru, hex)| AttributeOption {
        value: (*value).into(),
        label: labels(sr, en, ru),
        color_hex: Some((*hex).into()),
        image_url: None,
        is_active: true,
        aliases: Vec::new(),
    })
    .collect();
    color.is_variant_compatible = true;
    color.purpose = Purpose::Both;
    let mut brand = definition(
        2101,
        "brand",
        T::Select,
        labels("Brend", "Brand", "Бренд"),
        2,
    );
    brand.options = plain_options(&[
        ("Apple", "Apple", "Apple"),
        ("Samsung", "Samsung", "Samsung"),
        ("Xiaomi", "Xiaomi", "Xiaomi"),
        ("Lenovo", "Lenovo", "Lenovo"),
    ]);
    brand.is_searchable = true;
    let mut storage = definition(
        2102,
        "storage_gb",
        T::Number,
        labels("Memorija", "Storage", "Память"),
        3,
    );
    storage.rules = number_rules(1, 4096);
    let mut car_make = definition(
        2201,
        "car_make",
        T::Select,
        labels("Marka", "Make", "Марка"),
        2,
    );
    car_make.options = plain_options(&[
        ("bmw", "BMW", "BMW"),
        ("audi", "Audi", "Audi"),
        ("tesla", "Tesla", "Tesla"),
        ("yugo", "Yugo", "Yugo"),
    ]);
    car_make.is_searchable = true;
    let mut year = definition(
        2202,
        "year",
        T::Number,
        labels("Godište", "Year", "Год выпуска"),
        3,
    );
    year.rules = number_rules(1950, 2026);
    let mut mileage = definition(
        2203,
        "mileage",
        T::Number,
        labels("Kilometraža", "Mileage", "Пробег"),
        4,
    );
    mileage.rules = number_rules(0, 2_000_000);
    mileage.ui.icon = Some("km".into());
    let mut fuel = definition(
        2204,
        "fuel_type",
        T::Select,
        labels("Gorivo", "Fuel", "Топливо"),
        6,
    );
    fuel.options = plain_options(&[
        ("petrol", "Petrol", "Бензин"),
        ("diesel", "Diesel", "Дизель"),
        ("electric", "Electric", "Электро"),
    ]);
    let mut transmission = definition(
        2205,
        "transmission",
        T::Select,
        labels("Menjač", "Transmission", "Коробка передач"),
        7,
    );
    transmission.options = vec![
        AttributeOption {
            value: "automatic".into(),
            label: labels("Automatski", "Automatic", "Автомат"),
            color_hex: None,
            image_url: None,
            is_active: true,
            aliases: Vec::new(),
        },
        AttributeOption {
            value: "manual".into(),
            label: labels("Manuelni", "Manual", "Механика"),
            color_hex: None,
            image_url: None,
            is_active: true,
            aliases: Vec::new(),
        },
    ];
    let registered = definition(
        2206,
        "first_registration",
        T::Date,
        labels(
            "Prva registracija",
            "First registration",
            "Первая регистрация",
        ),
        8,
    );
    let mut vin = definition(2207, "vin", T::Text, labels("Broj šasije", "VIN", "VIN"), 9);
    vin.rules.pattern = domain::Pattern::new("[A-HJ-NPR-Z0-9]{17}").ok();
    vin.show_in_card = false;
    let mut area = definition(
        2301,
        "area",
        T::Number,
        labels("Površina", "Area", "Площадь"),
        2,
    );
    area.rules = number_rules(1, 100_000);
    area.is_required = true;
    let mut rooms = definition(
        2302,
        "rooms",
        T::Number,
        labels("Broj soba", "Rooms", "Комнаты"),
        3,
    );
    rooms.rules = number_rules(0, 50);
    let mut floor = definition(
        2303,
        "floor",
        T::Number,
        labels("Sprat", "Floor", "Этаж"),
        4,
    );
    floor.rules = number_rules(-5, 200);
    let elevator = definition(
        2304,
        "has_elevator",
        T::Boolean,
        labels("Lift", "Elevator", "Лифт"),
        5,
    );
    let mut description = definition(
        2305,
        "heating_notes",
        T::Textarea,
        labels("Grejanje", "Heating", "Отопление"),
        6,
    );
    description.rules.max_length = Some(500);
    description.ui.show_in_list = true;
    let mut sizes = definition(
        2401,
        "clothing_size",
        T::Select,
        labels("Veličina odeće", "Clothing size", "Размер одежды"),
        3,
    );
    sizes.options = plain_options(&[
        ("S", "S", "S"),
        ("M", "M", "M"),
        ("L", "L", "L"),
        ("XL", "XL", "XL"),
    ]);
    let mut delivery = definition(
        2005,
        "delivery",
        T::Select,
        labels("Dostava", "Delivery", "Доставка"),
        80,
    );
    delivery.options = vec![
        AttributeOption {
            value: "pickup".into(),
            label: labels("Lično preuzimanje", "Pickup", "Самовывоз"),
            color_hex: None,
            image_url: None,
            is_active: true,
            aliases: Vec::new(),
        },
        AttributeOption {
            value: "courier".into(),
            label: labels("Kurirska služba", "Courier", "Курьер"),
            color_hex: None,
            image_url: None,
            is_active: true,
            aliases: Vec::new(),
        },
        AttributeOption {
            value: "post".into(),
            label: labels("Pošta", "Post", "Почта"),
            color_hex: None,
            image_url: None,
            is_active: true,
            aliases: Vec::new(),
        },
    ];
    let exchange = definition(
        2006,
        "exchange_possible",
        T::Boolean,
        labels("Moguća zamena", "Exchange possible", "Возможен обмен"),
        91,
    );
    let mut warranty = definition(
        2007,
        "warranty_months",
        T::Number,
        labels("Garancija (meseci)", "Warranty (months)", "Гарантия (мес.)"),
        85,
    );
    warranty.rules = number_rules(0, 120);
    let mut city = definition(2008, "city", T::Select, labels("Grad", "City", "Город"), 70);
    city.options = plain_options(&[
        ("Beograd", "Belgrade", "Белград"),
        ("Novi Sad", "Novi Sad", "Нови-Сад"),
        ("Niš", "Niš", "Ниш"),
        ("Kragujevac", "Kragujevac", "Крагуевац"),
        ("Subotica", "Subotica", "Суботица"),
    ]);
    vec![
        condition,
        negotiable,
        delivery,
        exchange,
        warranty,
        city,
        color,
        brand,
        storage,
        car_make,
        year,
        mileage,
        fuel,
        transmission,
        registered,
        vin,
        area,
        rooms,
        floor,
        elevator,
        description,
        sizes,
    ]
}

fn bindings() -> Vec<CategoryBinding> {
    let bind =
        |category: i64, attribute: i64, sort: i32| CategoryBinding::new(category, attribute, sort);
    let mut bindings = Vec::new();
    // General attributes on every root, so every leaf inherits them.
    for root in 1001..=1020 {
        bindings.push(bind(root, 2002, 1));
        bindings.push(bind(root, 2003, 99));
        bindings.push(bind(root, 2005, 80));
        bindings.push(bind(root, 2006, 91));
        bindings.push(bind(root, 2007, 85));
        bindings.push(bind(root, 2008, 70));
    }
    bindings.extend([
        bind(1001, 2101, 2),
        bind(1001, 2004, 5),
        bind(1101, 2102, 3),
        bind(1102, 2102, 3),
        bind(1002, 2004, 5),
        bind(1002, 2401, 3),
        bind(1003, 2004, 5),
        bind(1003, 2201, 2),
        bind(1003, 2202, 3),
        bind(1003, 2203, 4),
        bind(1301, 2204, 6),
        bind(1301, 2205, 7),
        bind(1301, 2206, 8),
        bind(1301, 2207, 9),
        bind(1004, 2301, 2),
        bind(1004, 2302, 3),
        bind(1401, 2303, 4),
        bind(1401, 2304, 5),
        bind(1004, 2305, 6),
    ]);
    // Cars require a year; electric sedans have no fuel type; motorcycles hide the colour in cards.
    bindings.push(CategoryBinding {
        is_required: Some(true),
        ..bind(1301, 2202, 3)
    });
    bindings.push(CategoryBinding {
        is_enabled: false,
        ..bind(1311, 2204, 6)
    });
    bindings.push(CategoryBinding {
        show_in_card: Some(false),
        custom_component: Some("ColorChips".into()),
        ..bind(1302, 2004, 5)
    });
    bindings
}

fn variant_axes() -> Vec<VariantAxis> {
    let mut color = c2c_attributes()
        .into_iter()
        .find(|a| a.code == "color")
        .unwrap_or_else(|| Attribute::new(2004, "color", AttributeType::Multiselect));
    color.purpose = Purpose::Both;
    let mut size = definition(
        FIRST_UNIFIED_ONLY_ID + 2,
        "size",
        AttributeType::Size,
        labels("Veličina", "Size", "Размер"),
        2,
    );
    size.purpose = Purpose::Variant;
    size.is_required = true;
    size.affects_stock = true;
    size.options = plain_options(&[("S", "S", "S"), ("M", "M", "M"), ("L", "L", "L")]);
    // The B2C catalogue shows each size with its picture of the size guide.
    for option in &mut size.options {
        option.image_url = Some(format!(
            "https://cdn.marketplace.example/size-guide/{}.png",
            option.value.to_lowercase()
        ));
    }
    vec![
        VariantAxis {
            legacy_id: 1,
            attribute: color,
        },
        VariantAxis {
            legacy_id: 2,
            attribute: size,
        },
    ]
}

impl Dataset {
    /// The marketplace with `listings` listings (and a tenth as many products, three
    /// variants each). The same `seed` always gives the same data.
    pub fn marketplace(listings: usize, seed: u64) -> Self {
        Self::marketplace_with(listings, listings.div_ceil(10), seed)
    }

    /// The marketplace with `listings` listings and `products` products, three variants each.
    pub fn marketplace_with(listings: usize, products: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut dataset = Dataset {
            categories: categories(),
            attributes: c2c_attributes(),
            bindings: bindings(),
            variant_axes: variant_axes(),
            ..Default::default()
        };
        let schemas: HashMap<i64, EffectiveSchema> = LISTING_LEAVES
            .iter()
            .map(|(leaf, _)| (*leaf, dataset.schema(*leaf)))
            .collect();
        let weights: usize = LISTING_LEAVES.iter().map(|(_, w)| w).sum();
        // Listing and product ids come from one shared sequence in the marketplace.
        let mut next_id = 1_i64;
        for index in 0..listings {
            let mut slot = index % weights;
            let leaf = LISTING_LEAVES
                .iter()
                .find(|(_, weight)| {
                    if slot < *weight {
                        true
                    } else {
                        slot -= weight;
                        false
                    }
                })
                .map_or(1101, |(leaf, _)| *leaf);
            let values = random_values(&schemas[&leaf], &mut rng);
            dataset.listings.push(Listing {
                id: next_id,
                category_id: leaf,
                title: format!("Oglas {next_id}"),
                values,
            });
            next_id += 1;
        }
        let phone_schema = &schemas[&1101];
        for _ in 0..products {
            let product_id = next_id;
            next_id += 1;
            let mut values = random_values(phone_schema, &mut rng);
            values.remove("color");
            dataset.products.push(Product {
                id: product_id,
                category_id: 1101,
                values,
            });
            for size in ["S", "M", "L"] {
                let color = ["red", "blue", "black"][rng.gen_range(0..3)];
                let mut values = EntityValues::new();
                values.insert(
                    "color".into(),
                    TypedValue::new(Value::Multiselect(vec![color.into()])),
                );
                values.insert("size".into(), TypedValue::new(Value::Size(size.into())));
                dataset.variants.push(Variant {
                    id: next_id,
                    product_id,
                    values,
                });
                next_id += 1;
            }
        }
        dataset
    }

    /// Legacy form with every defect of the real data: besides those always planted (four
    /// option shapes, numbers tagged 'text', multiselect as one string, empty rows, mixed-case
    /// B2C keys), `transmission` spelled `Automatic` / `автомат` (certain: the labels say so),
    /// now and then a spelling no option explains, and a `year` of 1.
    pub fn with_all_defects(mut self) -> Self {
        self.all_defects = true;
        self
    }

    /// The effective schema of a category, resolved from this dataset alone.
    pub fn schema(&self, category_id: i64) -> EffectiveSchema {
        let mut chain = vec![category_id];
        while let Some(parent) = self
            .categories
            .iter()
            .find(|c| Some(&c.id) == chain.last())
            .and_then(|c| c.parent_id)
        {
            chain.push(parent);
        }
        EffectiveSchema::resolve(&chain, &self.bindings, &self.attributes)
    }

    /// The unified definitions: each C2C attribute (keeping its id), merged with the variant
    /// axis of the same code, plus axes of their own; with their legacy ids.
    pub fn unified_attributes(&self) -> Vec<(Attribute, Option<i64>, Option<i64>)> {
        let mut unified: Vec<_> = self
            .attributes
            .iter()
            .map(|attribute| {
                let axis = self
                    .variant_axes
                    .iter()
                    .find(|a| a.attribute.code == attribute.code);
                (
                    attribute.clone(),
                    Some(attribute.id),
                    axis.map(|a| a.legacy_id),
                )
            })
            .collect();
        for axis in &self.variant_axes {
            if !self
                .attributes
                .iter()
                .any(|a| a.code == axis.attribute.code)
            {
                unified.push((axis.attribute.clone(), None, Some(axis.legacy_id)));
            }
        }
        unified
    }

    /// Every entity with its values.
    pub fn entities(&self) -> impl Iterator<Item = (EntityRef, &EntityValues)> {
        let listings = self
            .listings
            .iter()
            .map(|l| (EntityRef::listing(l.id), &l.values));
        let products = self
            .products
            .iter()
            .map(|p| (EntityRef::product(p.id), &p.values));
        let variants = self
            .variants
            .iter()
            .map(|v| (EntityRef::variant(v.id), &v.values));
        listings.chain(products).chain(variants)
    }
}

fn categories() -> Vec<Category> {
    let mut categories: Vec<Category> = ROOTS
        .iter()
        .zip(1001..)
        .map(|((name, slug), id)| Category {
            id,
            parent_id: None,
            name: (*name).into(),
            slug: (*slug).into(),
            level: 1,
        })
        .collect();
    for (id, parent, name, slug) in BRANCHES {
        let level = categories
            .iter()
            .find(|c| c.id == parent)
            .map_or(1, |p| p.level)
            + 1;
        categories.push(Category {
            id,
            parent_id: Some(parent),
            name: name.into(),
            slug: slug.into(),
            level,
        });
    }
    categories
}

/// Plausible values for most attributes of a schema; required ones always get one.
fn random_values(schema: &EffectiveSchema, rng: &mut StdRng) -> EntityValues {
    let mut values = EntityValues::new();
    for effective in &schema.attributes {
        if !effective.is_required && rng.gen_bool(0.1) {
            continue;
        }
        let attribute = &effective.attribute;
        let pick = |rng: &mut StdRng| {
            effective.options[rng.gen_range(0..effective.options.len())]
                .value
                .clone()
        };
        let value = match attribute.attribute_type {
            AttributeType::Number => {
                let (min, max) = (
                    attribute.rules.min.unwrap_or_default(),
                    attribute.rules.max.unwrap_or(Decimal::from(1000)),
                );
                let span = (max - min).trunc().mantissa().clamp(1, 1_000_000) as i64;
                let mut number = min + Decimal::from(rng.gen_range(0..=span));
                if attribute.code == "area" {
                    // Areas carry decimals, as real ones do.
                    number += Decimal::new(rng.gen_range(0..100), 2);
                    number = number.min(max);
                }
                Value::Number(number)
            }
            AttributeType::Boolean => Value::Boolean(rng.gen_bool(0.5)),
            AttributeType::Select if !effective.options.is_empty() => Value::Select(pick(rng)),
            AttributeType::Multiselect if !effective.options.is_empty() => {
                let mut chosen = vec![pick(rng)];
                let second = pick(rng);
                if !chosen.contains(&second) {
                    chosen.push(second);
                }
                Value::Multiselect(chosen)
            }
            AttributeType::Date => Value::Date(
                NaiveDate::from_ymd_opt(
                    2000 + rng.gen_range(0..26),
                    rng.gen_range(1..=12),
                    rng.gen_range(1..=28),
                )
                .unwrap_or_default(),
            ),
            AttributeType::Text if attribute.code == "vin" => Value::Text(
                (0..17)
                    .map(|_| b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789"[rng.gen_range(0..33)] as char)
                    .collect(),
            ),
            AttributeType::Text | AttributeType::Textarea => {
                Value::Text("Centralno grejanje, uredno održavano".into())
            }
            _ => continue,
        };
        let unit = match attribute.code.as_str() {
            "mileage" if rng.gen_bool(0.3) => Some("km".to_owned()),
            "area" => Some("m²".to_owned()),
            _ => None,
        };
        values.insert(attribute.code.clone(), TypedValue { value, unit });
    }
    values
}

/// The demo's users: listing `id` belongs to user `1 + id % 50`.
pub fn listing_owner(listing_id: i64) -> i64 {
    1 + listing_id.rem_euclid(50)
}

/// The demo's storefronts (id, owner): five shops of users 101 to 105.
pub const STOREFRONTS: [(i64, i64); 5] = [(1, 101), (2, 102), (3, 103), (4, 104), (5, 105)];

/// The storefront that sells product `id`.
pub fn product_storefront(product_id: i64) -> i64 {
    1 + product_id.rem_euclid(STOREFRONTS.len() as i64)
}
