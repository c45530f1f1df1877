use nimbus_core::{FunctionName, FunctionSpec};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{Result, Store, StoreError, now_ms};

/// A deployed function as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionRecord {
    pub spec: FunctionSpec,
    /// Increases with every deploy of this name, and never goes back.
    pub version: u64,
    pub component_sha256: String,
    pub deployed_at_ms: i64,
}

impl Store {
    /// Records a deploy of `spec`, replacing any earlier one of the same
    /// name, and returns it with its new version.
    pub fn save_function(&self, spec: &FunctionSpec, component_sha256: &str) -> Result<FunctionRecord> {
        let spec_json = serde_json::to_string(spec)
            .map_err(|e| StoreError::Corrupt { name: spec.name.to_string(), reason: e.to_string() })?;
        let deployed_at_ms = now_ms();
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let last: Option<i64> = tx
            .query_row("SELECT last_version FROM function_versions WHERE name = ?1", [spec.name.as_str()], |r| r.get(0))
            .optional()?;
        let version = last.unwrap_or(0) + 1;
        tx.execute(
            "INSERT INTO function_versions (name, last_version) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET last_version = excluded.last_version",
            params![spec.name.as_str(), version],
        )?;
        tx.execute(
            "INSERT INTO functions (name, version, spec, component_sha256, deployed_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET version = excluded.version, spec = excluded.spec,
               component_sha256 = excluded.component_sha256, deployed_at_ms = excluded.deployed_at_ms",
            params![spec.name.as_str(), version, spec_json, component_sha256, deployed_at_ms],
        )?;
        tx.commit()?;
        Ok(FunctionRecord {
            spec: spec.clone(),
            version: version as u64,
            component_sha256: component_sha256.to_owned(),
            deployed_at_ms,
        })
    }

    /// Removes a function; `false` if there was none of that name.
    pub fn remove_function(&self, name: &FunctionName) -> Result<bool> {
        Ok(self.db().execute("DELETE FROM functions WHERE name = ?1", [name.as_str()])? > 0)
    }

    pub fn list_functions(&self) -> Result<Vec<FunctionRecord>> {
        let db = self.db();
        let mut stmt =
            db.prepare("SELECT name, version, spec, component_sha256, deployed_at_ms FROM functions ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, version, spec, component_sha256, deployed_at_ms) = row?;
            let spec: FunctionSpec =
                serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt { name, reason: e.to_string() })?;
            out.push(FunctionRecord { spec, version: version as u64, component_sha256, deployed_at_ms });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::{Limits, Runtime};

    fn spec(name: &str) -> FunctionSpec {
        FunctionSpec {
            name: FunctionName::parse(name).unwrap(),
            runtime: Runtime::Wasm { component: "a.wasm".into() },
            limits: Limits::default(),
            env: Default::default(),
            routes: vec![],
            async_config: Default::default(),
            schedules: vec![],
            queues: vec![],
        }
    }

    #[test]
    fn versions_increase_across_redeploys_and_removal() {
        let dir = std::env::temp_dir().join(format!("nimbus-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.save_function(&spec("a"), "h1").unwrap().version, 1);
        assert_eq!(store.save_function(&spec("a"), "h2").unwrap().version, 2);
        store.save_function(&spec("b"), "h3").unwrap();
        let listed = store.list_functions().unwrap();
        assert_eq!(listed.iter().map(|r| (r.spec.name.as_str(), r.version)).collect::<Vec<_>>(), [("a", 2), ("b", 1)]);
        assert_eq!(listed[0].component_sha256, "h2");
        assert!(store.remove_function(&FunctionName::parse("a").unwrap()).unwrap());
        assert!(!store.remove_function(&FunctionName::parse("a").unwrap()).unwrap());
        assert_eq!(store.save_function(&spec("a"), "h1").unwrap().version, 3);
        drop(store);
        let reopened = Store::open(&dir).unwrap();
        assert_eq!(reopened.list_functions().unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
