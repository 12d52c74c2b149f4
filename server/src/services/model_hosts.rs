//! Admin → Model hosts: the hosts `http:` runtimes may call.

use app::api::ModelHostAdmin;
use app::domain::{AppError, ModelHost, Runtime};
use async_trait::async_trait;

use super::Services;
use crate::db::model_hosts::{self, ModelHostRow};
use crate::db::now_ms;
use crate::runner::model_hosts::{HostPattern, ModelHosts};

impl Services {
    /// Hands the stored entries to this instance's runner (other instances
    /// pick them up when they next reconcile).
    pub async fn reload_model_hosts(&self) -> Result<(), AppError> {
        let entries = self.db.interact(model_hosts::entries).await?;
        self.runner.executor().set_model_hosts(&entries);
        Ok(())
    }

    /// A version's `http:` URL must be on the list of allowed model hosts.
    pub(super) async fn check_model_host(&self, runtime: &Runtime) -> Result<(), AppError> {
        let (Runtime::Http(url) | Runtime::HttpBatch(url)) = runtime else {
            return Ok(());
        };
        // The stored list, read now (another instance may have changed it),
        // checked as every call is checked.
        let hosts = ModelHosts::default();
        hosts.set(&self.db.interact(model_hosts::entries).await?);
        match hosts.refusal(url) {
            None => Ok(()),
            Some(mut message) => {
                if let Some(first) = message.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                Err(AppError::validation("runtime", format!("{message}.")))
            }
        }
    }
}

#[async_trait]
impl ModelHostAdmin for Services {
    async fn model_hosts(&self) -> Result<Vec<ModelHost>, AppError> {
        let rows = self.db.interact(model_hosts::list).await?;
        Ok(rows
            .into_iter()
            .map(|r| ModelHost {
                entry: r.entry,
                added_by: r.added_by,
                added_at: crate::runner::clock(r.added_at_ms),
            })
            .collect())
    }

    /// Allows an entry (normalized first); `by` names who did it.
    async fn allow_model_host(&self, by: &str, entry: &str) -> Result<ModelHost, AppError> {
        let entry = HostPattern::parse(entry)?.entry();
        let row = ModelHostRow {
            entry: entry.clone(),
            added_by: by.to_owned(),
            added_at_ms: now_ms(),
        };
        let added = {
            let row = row.clone();
            self.db.interact(move |c| model_hosts::add(c, &row)).await?
        };
        if !added {
            return Err(AppError::conflict(format!("{entry} is allowed already.")));
        }
        self.reload_model_hosts().await?;
        tracing::info!(entry, by, "model host allowed");
        self.audit(by, "model-host-allowed", &entry, "").await;
        Ok(ModelHost {
            entry: row.entry,
            added_by: row.added_by,
            added_at: crate::runner::clock(row.added_at_ms),
        })
    }

    async fn remove_model_host(&self, by: &str, entry: &str) -> Result<(), AppError> {
        let entry = entry.trim().to_owned();
        let removed = {
            let entry = entry.clone();
            self.db
                .interact(move |c| model_hosts::remove(c, &entry))
                .await?
        };
        if !removed {
            return Err(AppError::not_found(format!("The model host {entry}")));
        }
        self.reload_model_hosts().await?;
        tracing::info!(entry, by, "model host removed");
        self.audit(by, "model-host-removed", &entry, "").await;
        Ok(())
    }
}
