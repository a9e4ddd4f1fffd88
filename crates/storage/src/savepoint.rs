//! Savepoints that tell a refusal of the data from a failure: a bulk operation tries a write
//! under a savepoint and, when the database refuses the data, rolls back only that write and
//! goes on without it.

use crate::error::Result;

/// Ends `savepoint` after its write's `outcome`: kept when the write went through and `keep`
/// says so, rolled back otherwise. Returns the database's reason when it refused the write's
/// data (see `StorageError::refused_data`); any other error is returned as it is.
pub(crate) async fn settle<DB: sqlx::Database>(
    savepoint: sqlx::Transaction<'_, DB>,
    outcome: Result<()>,
    keep: bool,
) -> Result<Option<String>> {
    match outcome {
        Ok(()) if keep => {
            savepoint.commit().await?;
            Ok(None)
        }
        Ok(()) => {
            savepoint.rollback().await?;
            Ok(None)
        }
        Err(err) => match err.refused_data() {
            Some(reason) => {
                savepoint.rollback().await?;
                Ok(Some(reason))
            }
            None => Err(err),
        },
    }
}
