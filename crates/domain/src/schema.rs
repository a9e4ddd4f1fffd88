//! Category bindings and the effective schema of a category: its own bindings plus those
//! inherited from its ancestors, the nearest binding winning.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::attribute::Attribute;
use crate::options::AttributeOption;

/// An attribute bound to a category, with the per-category overrides (`None` = inherit the
/// attribute's own setting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryBinding {
    pub category_id: i64,
    pub attribute_id: i64,
    /// A disabled binding hides the attribute in this category and its descendants,
    /// including when an ancestor binds it.
    pub is_enabled: bool,
    pub is_required: Option<bool>,
    pub is_filterable: Option<bool>,
    pub is_searchable: Option<bool>,
    pub show_in_card: Option<bool>,
    pub show_in_list: Option<bool>,
    pub custom_component: Option<String>,
    pub sort_order: i32,
    pub category_specific_options: Option<Vec<AttributeOption>>,
}

impl CategoryBinding {
    pub fn new(category_id: i64, attribute_id: i64, sort_order: i32) -> Self {
        Self {
            category_id,
            attribute_id,
            is_enabled: true,
            is_required: None,
            is_filterable: None,
            is_searchable: None,
            show_in_card: None,
            show_in_list: None,
            custom_component: None,
            sort_order,
            category_specific_options: None,
        }
    }
}

/// An attribute as it applies in one category, with every override resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectiveAttribute {
    pub attribute: Attribute,
    /// The category whose binding applies: the category itself or an ancestor.
    pub bound_on: i64,
    pub inherited: bool,
    pub is_required: bool,
    pub is_filterable: bool,
    pub is_searchable: bool,
    pub show_in_card: bool,
    pub show_in_list: bool,
    pub custom_component: Option<String>,
    pub sort_order: i32,
    /// The category's own option list when it has one, else the attribute's.
    pub options: Vec<AttributeOption>,
}

/// The attributes that apply to one category, in display order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectiveSchema {
    pub category_id: i64,
    pub attributes: Vec<EffectiveAttribute>,
}

impl EffectiveSchema {
    /// Resolves the schema of `category_chain[0]`. `category_chain` lists the category and
    /// then its ancestors up to the root; `bindings` may belong to any of them. For each
    /// attribute the binding of the nearest category wins. Order: binding sort order, then
    /// attribute sort order, then code.
    pub fn resolve(
        category_chain: &[i64],
        bindings: &[CategoryBinding],
        attributes: &[Attribute],
    ) -> Self {
        let Some(&category_id) = category_chain.first() else {
            return Self {
                category_id: 0,
                attributes: Vec::new(),
            };
        };
        let depth_of: HashMap<i64, usize> = category_chain
            .iter()
            .enumerate()
            .map(|(depth, id)| (*id, depth))
            .collect();
        let mut nearest: HashMap<i64, (usize, &CategoryBinding)> = HashMap::new();
        for binding in bindings {
            let Some(&depth) = depth_of.get(&binding.category_id) else {
                continue;
            };
            nearest
                .entry(binding.attribute_id)
                .and_modify(|current| {
                    if depth < current.0 {
                        *current = (depth, binding);
                    }
                })
                .or_insert((depth, binding));
        }
        let by_id: HashMap<i64, &Attribute> = attributes.iter().map(|a| (a.id, a)).collect();
        let mut resolved: Vec<EffectiveAttribute> = nearest
            .into_values()
            .filter(|(_, binding)| binding.is_enabled)
            .filter_map(|(depth, binding)| {
                let attribute = by_id.get(&binding.attribute_id)?;
                attribute
                    .is_active
                    .then(|| effective(attribute, binding, depth > 0))
            })
            .collect();
        resolved.sort_by(|a, b| {
            (a.sort_order, a.attribute.sort_order, &a.attribute.code).cmp(&(
                b.sort_order,
                b.attribute.sort_order,
                &b.attribute.code,
            ))
        });
        Self {
            category_id,
            attributes: resolved,
        }
    }

    pub fn get(&self, code: &str) -> Option<&EffectiveAttribute> {
        self.attributes.iter().find(|a| a.attribute.code == code)
    }
}

fn effective(
    attribute: &Attribute,
    binding: &CategoryBinding,
    inherited: bool,
) -> EffectiveAttribute {
    EffectiveAttribute {
        bound_on: binding.category_id,
        inherited,
        is_required: binding
            .is_required
            .unwrap_or(attribute.is_required || attribute.rules.required),
        is_filterable: binding.is_filterable.unwrap_or(attribute.is_filterable),
        is_searchable: binding.is_searchable.unwrap_or(attribute.is_searchable),
        show_in_card: binding.show_in_card.unwrap_or(attribute.show_in_card),
        show_in_list: binding.show_in_list.unwrap_or(attribute.ui.show_in_list),
        custom_component: binding
            .custom_component
            .clone()
            .or_else(|| attribute.ui.custom_component.clone()),
        sort_order: binding.sort_order,
        options: binding
            .category_specific_options
            .clone()
            .unwrap_or_else(|| attribute.options.clone()),
        attribute: attribute.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::AttributeType;

    fn attribute(id: i64, code: &str, sort_order: i32) -> Attribute {
        Attribute {
            sort_order,
            ..Attribute::new(id, code, AttributeType::Text)
        }
    }

    fn codes(schema: &EffectiveSchema) -> Vec<&str> {
        schema
            .attributes
            .iter()
            .map(|a| a.attribute.code.as_str())
            .collect()
    }

    // Chain of a leaf: 1311 (electric cars) → 1310 → 1301 (cars) → 1003 (automotive root).
    const CHAIN: [i64; 4] = [1311, 1310, 1301, 1003];

    #[test]
    fn a_leaf_inherits_the_bindings_of_every_ancestor() {
        let attributes = [attribute(2002, "condition", 0), attribute(2202, "year", 0)];
        let bindings = [
            CategoryBinding::new(1003, 2002, 1),
            CategoryBinding::new(1301, 2202, 2),
        ];
        let schema = EffectiveSchema::resolve(&CHAIN, &bindings, &attributes);
        assert_eq!(codes(&schema), ["condition", "year"]);
        assert!(schema.attributes.iter().all(|a| a.inherited));
        assert_eq!(schema.get("year").map(|a| a.bound_on), Some(1301));
    }

    #[test]
    fn the_categorys_own_binding_wins_over_an_ancestors() {
        let attributes = [attribute(2202, "year", 0)];
        let bindings = [
            CategoryBinding {
                is_required: Some(false),
                ..CategoryBinding::new(1301, 2202, 1)
            },
            CategoryBinding {
                is_required: Some(true),
                ..CategoryBinding::new(1311, 2202, 9)
            },
        ];
        let schema = EffectiveSchema::resolve(&CHAIN, &bindings, &attributes);
        let year = schema.get("year").expect("year applies");
        assert!(year.is_required);
        assert!(!year.inherited);
        assert_eq!(year.sort_order, 9);
    }

    #[test]
    fn a_disabled_binding_hides_an_inherited_attribute() {
        let attributes = [attribute(2204, "fuel_type", 0)];
        let bindings = [
            CategoryBinding::new(1301, 2204, 1),
            CategoryBinding {
                is_enabled: false,
                ..CategoryBinding::new(1311, 2204, 1)
            },
        ];
        assert!(
            EffectiveSchema::resolve(&CHAIN, &bindings, &attributes)
                .attributes
                .is_empty()
        );
        assert_eq!(
            codes(&EffectiveSchema::resolve(
                &[1310, 1301, 1003],
                &bindings,
                &attributes
            )),
            ["fuel_type"]
        );
    }

    #[test]
    fn bindings_of_unrelated_categories_and_inactive_attributes_do_not_apply() {
        let mut inactive = attribute(2003, "negotiable", 0);
        inactive.is_active = false;
        let attributes = [attribute(2101, "brand", 0), inactive];
        let bindings = [
            CategoryBinding::new(1001, 2101, 1),
            CategoryBinding::new(1003, 2003, 1),
        ];
        assert!(
            EffectiveSchema::resolve(&CHAIN, &bindings, &attributes)
                .attributes
                .is_empty()
        );
    }

    #[test]
    fn order_is_binding_then_attribute_sort_order_then_code() {
        let attributes = [
            attribute(1, "zeta", 0),
            attribute(2, "alpha", 5),
            attribute(3, "beta", 5),
            attribute(4, "first", 9),
        ];
        let bindings = [
            CategoryBinding::new(1003, 1, 2),
            CategoryBinding::new(1003, 2, 2),
            CategoryBinding::new(1003, 3, 2),
            CategoryBinding::new(1003, 4, 1),
        ];
        let schema = EffectiveSchema::resolve(&CHAIN, &bindings, &attributes);
        assert_eq!(codes(&schema), ["first", "zeta", "alpha", "beta"]);
    }

    #[test]
    fn overrides_fall_back_to_the_attribute_settings() {
        let mut year = attribute(2202, "year", 0);
        year.is_required = true;
        year.is_filterable = false;
        let bindings = [CategoryBinding {
            is_filterable: Some(true),
            ..CategoryBinding::new(1301, 2202, 1)
        }];
        let schema = EffectiveSchema::resolve(&CHAIN, &bindings, &[year]);
        let year = schema.get("year").expect("year applies");
        assert!(year.is_required);
        assert!(year.is_filterable);
    }
}
