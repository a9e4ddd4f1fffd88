//! Who owns an entity, decided on locked rows: a user's write is authorised by the owner at its
//! commit. On PostgreSQL the write already holds its entity's row (`entity_category`); the
//! owner check also holds the rows that name the owner — the storefront, and a variant's
//! product — shared, so an owner change waits for the write, and a write that waited for an
//! owner change reads the new owner. SQLite takes its write lock up front: nothing can change
//! in between.

use domain::{EntityKind, EntityRef};

use crate::backend::{Backend, Conn};
use crate::dialect::{Sql, on_dialect};
use crate::error::Result;
use crate::router::Router;
use crate::stats::record_queries;

/// A listing's owner is on its own row, which the write holds already.
const LISTING_OWNER: Sql =
    Sql::same("SELECT CAST(user_id AS BIGINT) FROM marketplace_listings WHERE id = $1");

const PRODUCT_OWNER: Sql = Sql {
    pg: "SELECT CAST(s.user_id AS BIGINT)
        FROM storefront_products p JOIN storefronts s ON s.id = p.storefront_id
        WHERE p.id = $1 FOR SHARE OF s",
    lite: "SELECT CAST(s.user_id AS BIGINT)
        FROM storefront_products p JOIN storefronts s ON s.id = p.storefront_id WHERE p.id = $1",
};

const VARIANT_OWNER: Sql = Sql {
    pg: "SELECT CAST(s.user_id AS BIGINT)
        FROM storefront_product_variants v JOIN storefront_products p ON p.id = v.product_id
        JOIN storefronts s ON s.id = p.storefront_id WHERE v.id = $1 FOR SHARE OF p, s",
    lite: "SELECT CAST(s.user_id AS BIGINT)
        FROM storefront_product_variants v JOIN storefront_products p ON p.id = v.product_id
        JOIN storefronts s ON s.id = p.storefront_id WHERE v.id = $1",
};

/// The user who owns `entity` (a listing's user, a product's or variant's storefront's user),
/// holding what names the owner until the transaction ends; `None` when the entity or its
/// owner is unknown.
pub(crate) async fn entity_owner<B: Backend>(
    conn: &mut Conn<B>,
    entity: EntityRef,
) -> Result<Option<i64>> {
    record_queries(1);
    let sql = match entity.kind {
        EntityKind::Listing => LISTING_OWNER,
        EntityKind::Product => PRODUCT_OWNER,
        EntityKind::ProductVariant => VARIANT_OWNER,
    };
    let owner: Option<Option<i64>> = on_dialect!(B::dialect(conn), sql, |c, statement| {
        sqlx::query_scalar(statement)
            .bind(entity.id)
            .fetch_optional(&mut *c)
            .await?
    });
    Ok(owner.flatten())
}

impl<B: Backend> Router<B> {
    /// The owner of `entity` as it stands (`None` when the entity does not exist), read
    /// without locking anything: what lets a user's write that is not theirs be refused
    /// before its body is read. The write decides again on locked rows at its commit.
    pub(crate) async fn owner_now(&self, entity: EntityRef) -> Result<Option<Option<i64>>> {
        // The same statements without `FOR SHARE`, which SQLite's spelling already lacks.
        let sql = match entity.kind {
            EntityKind::Listing => LISTING_OWNER,
            EntityKind::Product => PRODUCT_OWNER,
            EntityKind::ProductVariant => VARIANT_OWNER,
        };
        let mut conn = self.acquire().await?;
        record_queries(1);
        let owner = on_dialect!(
            B::dialect(&mut conn),
            Sql::same(sql.lite),
            |c, statement| {
                sqlx::query_scalar(statement)
                    .bind(entity.id)
                    .fetch_optional(&mut *c)
                    .await?
            }
        );
        conn.commit().await?;
        Ok(owner)
    }
}
