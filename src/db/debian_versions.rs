//! Relation `all_debian_versions` (the Debian archive's source versions, present only on a
//! Debian-enabled Janitor database): whether a dependency is available.

use sqlx::PgConnection;

/// Whether the relation exists in this database.
pub async fn present(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let name: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('all_debian_versions')::text")
            .fetch_one(conn)
            .await?;
    Ok(name.is_some())
}

/// A comparison debversion supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOperator {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `>`
    Greater,
    /// `<=`
    LessOrEqual,
    /// `>=`
    GreaterOrEqual,
}

impl VersionOperator {
    fn sql(self) -> &'static str {
        match self {
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::Less => "<",
            Self::Greater => ">",
            Self::LessOrEqual => "<=",
            Self::GreaterOrEqual => ">=",
        }
    }
}

/// Whether a source named `name` exists, at a version satisfying `constraint` if given.
/// A version debversion cannot parse is an error of kind `Database`.
pub async fn source_available(
    conn: &mut PgConnection,
    name: &str,
    constraint: Option<(VersionOperator, &str)>,
) -> Result<bool, sqlx::Error> {
    let found: Option<i32> = match constraint {
        None => {
            sqlx::query_scalar("SELECT 1 FROM all_debian_versions WHERE source = $1 LIMIT 1")
                .bind(name)
                .fetch_optional(conn)
                .await?
        }
        Some((operator, version)) => {
            // The operator is one of the fixed spellings above, never input.
            let statement = format!(
                "SELECT 1 FROM all_debian_versions
                 WHERE source = $1 AND version {} $2::debversion LIMIT 1",
                operator.sql()
            );
            sqlx::query_scalar(sqlx::AssertSqlSafe(statement))
                .bind(name)
                .bind(version)
                .fetch_optional(conn)
                .await?
        }
    };
    Ok(found.is_some())
}
