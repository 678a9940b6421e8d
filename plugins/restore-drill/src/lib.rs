//! restore-drill: the newest dump of each PostgreSQL backup set restored
//! into a scratch database, its row counts (and `check_query`) held to
//! those the backup job recorded around the dump, the scratch database
//! dropped. It only reads backups: grant the target read-only.

use opsd_backup_core::drill::{self, DrillConfig};
use opsd_sdk::{Context, ContextExt, Description, Outcome, Plugin, PluginError};

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["target", "sources"],
  "additionalProperties": false,
  "properties": {
    "target": {"type": "string", "description": "the guest directory the backup job writes, in a read-only grant"},
    "postgres": {"type": "object", "additionalProperties": false,
      "properties": {"host": {"type": "string"}, "port": {"type": "integer"}, "user": {"type": "string"}}},
    "sources": {"type": "array", "items": {"type": "object", "required": ["kind", "name", "database"], "additionalProperties": false,
      "properties": {"kind": {"enum": ["postgres"]}, "name": {"type": "string", "description": "the backup job's source name"},
        "database": {"type": "string"}, "host": {"type": "string"}, "port": {"type": "integer"}, "user": {"type": "string"},
        "check_query": {"type": "string", "description": "run only when the dump has no counts beside it"},
        "jobs": {"type": "integer", "minimum": 1, "maximum": 32, "description": "pg_restore workers for a directory-format dump"}}}}
  }
}"#;

struct RestoreDrill;

impl Plugin for RestoreDrill {
    fn describe() -> Description {
        Description::new(
            "restore-drill",
            env!("CARGO_PKG_VERSION"),
            "Restores the newest PostgreSQL dumps into scratch databases and checks them against the counts at dump time",
        )
        .wants_dir("/backups", false, "the backups to restore; read only")
        .wants_exec("pg_restore")
        .wants_exec("psql")
        .config_schema(SCHEMA)
        .suggested_schedule("0 5 * * sun")
    }

    fn run(ctx: Context) -> Result<Outcome, PluginError> {
        let cfg: DrillConfig = ctx.config()?;
        cfg.validate().map_err(|e| ctx.bad_config(e))?;
        drill::run(&cfg, ctx.dry_run)
    }
}

opsd_sdk::export_plugin!(RestoreDrill);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_says_what_config_parses() {
        opsd_sdk::schema::assert_matches::<DrillConfig>(
            SCHEMA,
            &serde_json::json!({
                "target": "/backups",
                "postgres": {"host": "/run/postgresql", "port": 5432, "user": "postgres"},
                "sources": [
                    {"kind": "postgres", "name": "shop", "database": "shop", "host": "db",
                     "port": 5433, "user": "backup",
                     "check_query": "SELECT sum(total) FROM orders", "jobs": 4}
                ]
            }),
        );
    }

    #[test]
    fn only_postgres_sources_can_be_drilled() {
        let e = serde_json::from_value::<DrillConfig>(serde_json::json!({
            "target": "/backups",
            "sources": [{"kind": "directory", "name": "uploads", "database": "x"}]
        }))
        .unwrap_err();
        assert!(e.to_string().contains("unknown variant `directory`"), "{e}");
    }
}
