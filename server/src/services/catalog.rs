//! The ML service catalog, algorithm versions and flows (the Events tab).
//!
//! Members see and change only their organizations' algorithms; admins see
//! all. Every flow change is checked here, whatever the browser sent: the
//! caller's membership, the grant for the direction, the version, and the
//! Dead Letter Queue rule (same broker connection, publish access, never the
//! source topic).

use app::api::Catalog;
use async_trait::async_trait;
use std::collections::HashMap;

use app::domain::{
    AlgorithmDetails, AlgorithmSummary, AppError, Batching, BrokerKind, CurrentUser,
    DeadLetterPage, DeadLetterQuery, Direction, DryRun, DryRunRequest, FlowOrdering, FlowRequest,
    FlowState, FlowStats, GrantedTopic, ReplayRequest, Rewind, RewindPlan, Runtime, TopicName,
    VersionInfo,
};

use super::Services;
use crate::db::algorithms::{self, AlgorithmRow};
use crate::db::flows as queries;
use diesel::Connection;

impl Services {
    async fn is_member(&self, user: &CurrentUser, org: &str) -> Result<bool, AppError> {
        if user.is_admin() {
            return Ok(true);
        }
        let (name, org) = (user.username.clone(), org.to_owned());
        Ok(self
            .db
            .interact(move |c| queries::is_member(c, &name, &org))
            .await?)
    }

    /// The algorithm, if it exists and `user` may see it. Another
    /// organization's algorithm is "not found", exactly like one that does
    /// not exist, so that its name cannot be probed.
    pub(super) async fn visible_algorithm(
        &self,
        user: &CurrentUser,
        org: &str,
        name: &str,
    ) -> Result<AlgorithmRow, AppError> {
        let not_found = || AppError::not_found(format!("The algorithm {org}/{name}"));
        if !self.is_member(user, org).await? {
            return Err(not_found());
        }
        let (o, n) = (org.to_owned(), name.to_owned());
        self.db
            .interact(move |c| algorithms::find(c, &o, &n))
            .await?
            .ok_or_else(not_found)
    }

    /// The versions of an algorithm, newest first (no access check).
    pub(super) async fn versions_of(
        &self,
        algorithm_id: &str,
    ) -> Result<Vec<VersionInfo>, AppError> {
        let id = algorithm_id.to_owned();
        let versions = self
            .db
            .interact(move |c| algorithms::versions(c, &[id]))
            .await?;
        Ok(versions
            .into_iter()
            .map(|v| VersionInfo {
                version: v.version,
                runtime: v.runtime,
                created_at_ms: v.created_at_ms,
            })
            .collect())
    }

    /// Refuses a Service Bus queue or subscription that requires sessions,
    /// which a flow does not read. When the namespace does not answer, the
    /// flow is saved, and its state will say why it cannot read.
    async fn check_without_sessions(
        &self,
        connection_id: &str,
        path: &str,
    ) -> Result<(), AppError> {
        let id = connection_id.to_owned();
        let connection = self
            .db
            .interact(move |c| crate::db::brokers::find_connection(c, &id))
            .await?
            .ok_or_else(|| AppError::not_found("The broker connection"))?;
        match self.service_bus(&connection)?.entity(path).await {
            Ok(Some(info)) if info.entity.as_ref().is_some_and(|e| e.requires_session) => {
                Err(AppError::validation(
                    "topic",
                    format!(
                        "'{path}' requires sessions, and flows read only queues and subscriptions without sessions. Choose an entity without sessions."
                    ),
                ))
            }
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::debug!(%path, %error, "whether the entity requires sessions is not known");
                Ok(())
            }
        }
    }

    /// Refuses an SQS queue whose letters could not be read back as the
    /// flow's page reads them (receiving, then making them visible again).
    async fn check_sqs_dead_letter_queue(
        &self,
        connection: &crate::db::brokers::ConnectionRow,
        dlq: &str,
    ) -> Result<(), AppError> {
        let refused = |why: &str| {
            Err(AppError::validation(
                "dlq_topic",
                format!("'{dlq}' cannot be a Dead Letter Queue: {why}"),
            ))
        };
        if dlq.ends_with(".fifo") {
            // SQS hands out one message of a FIFO group at a time.
            return refused(
                "it is a FIFO queue, whose letters could not be listed or replayed without taking them off the queue. Choose a standard queue.",
            );
        }
        let client = self.sqs_client(connection)?;
        let policy = client.redrive_policy(dlq).await.map_err(|error| {
            AppError::validation(
                "dlq_topic",
                format!("The queue '{dlq}' could not be checked: {error}"),
            )
        })?;
        if policy.is_some() {
            return refused(
                "it has a redrive policy of its own, and reading its letters counts as receiving them, so they would move on after a few reads. Remove its redrive policy, or choose another queue.",
            );
        }
        Ok(())
    }

    /// The Events rows of an algorithm (no access check).
    async fn event_rows(&self, algorithm_id: &str) -> Result<Vec<GrantedTopic>, AppError> {
        let id = algorithm_id.to_owned();
        let (grants, flows, paused, following, giving_back) = self
            .db
            .interact(move |c| {
                let flows = queries::flows_of(c, &id)?;
                let ids: Vec<String> = flows.iter().map(|f| f.id.clone()).collect();
                let paused: std::collections::HashSet<String> =
                    queries::paused_among(c, &ids)?.into_iter().collect();
                let following: std::collections::HashSet<String> =
                    queries::following(c, &id)?.into_iter().collect();
                let giving_back: std::collections::HashSet<String> =
                    queries::giving_back(c, &id)?.into_iter().collect();
                Ok((
                    queries::grants_of(c, &id)?,
                    flows,
                    paused,
                    following,
                    giving_back,
                ))
            })
            .await?;
        let mut rows = Vec::new();
        for grant in &grants {
            for (granted, direction) in [
                (grant.subscribe, Direction::Subscribe),
                (grant.publish, Direction::Publish),
            ] {
                if !granted {
                    continue;
                }
                let flow = flows
                    .iter()
                    .find(|f| {
                        f.connection_id == grant.connection_id
                            && f.topic == grant.topic
                            && f.direction == direction
                    })
                    .map(|f| FlowState {
                        id: f.id.clone(),
                        enabled: f.enabled,
                        version: f.version.clone(),
                        dlq_topic: f.dlq_topic.clone(),
                        ordering: FlowOrdering::parse(&f.ordering).unwrap_or_default(),
                        concurrency: f.concurrency.max(1) as u32,
                        batching: f.batching(),
                        give_back: giving_back.contains(&f.id),
                        paused: paused.contains(&f.id),
                        follows_subscribe_flow: following.contains(&f.id),
                    });
                let dlq_options = match direction {
                    Direction::Publish => Vec::new(),
                    Direction::Subscribe => {
                        let mut options: Vec<String> = grants
                            .iter()
                            .filter(|g| {
                                g.connection_id == grant.connection_id
                                    && g.publish
                                    && g.topic != grant.topic
                                    && !g.topic.contains("/subscriptions/")
                            })
                            .map(|g| g.topic.clone())
                            .collect();
                        // A Service Bus entity's own dead-letter subqueue.
                        if grant.connection_kind == BrokerKind::ServiceBus.as_str() {
                            options.insert(0, crate::servicebus::dead_letter_path(&grant.topic));
                        }
                        options
                    }
                };
                rows.push(GrantedTopic {
                    connection_id: grant.connection_id.clone(),
                    connection_name: grant.connection_name.clone(),
                    connection_kind: BrokerKind::parse(&grant.connection_kind).unwrap_or_default(),
                    topic: grant.topic.clone(),
                    direction,
                    flow,
                    dlq_options,
                });
            }
        }
        Ok(rows)
    }

    /// Checks that `user` may see the flow: an admin, or a member of its
    /// algorithm's organization.
    async fn check_flow(&self, user: &CurrentUser, flow_id: &str) -> Result<(), AppError> {
        let key = flow_id.to_owned();
        let flow = self
            .db
            .interact(move |c| queries::find_flow(c, &key))
            .await?
            .ok_or_else(|| AppError::not_found("The flow"))?;
        let algorithm_id = flow.algorithm_id.clone();
        let org = self
            .db
            .interact(move |c| algorithms::organization_of(c, &algorithm_id))
            .await?;
        if !self.is_member(user, &org).await? {
            return Err(AppError::Forbidden);
        }
        Ok(())
    }
}

#[async_trait]
impl Catalog for Services {
    async fn catalog(&self, user: &CurrentUser) -> Result<Vec<AlgorithmSummary>, AppError> {
        let (rows, versions) = self
            .db
            .interact(|c| {
                let rows = algorithms::all(c)?;
                let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
                Ok((rows, algorithms::versions(c, &ids)?))
            })
            .await?;
        let mut latest: HashMap<String, String> = HashMap::new();
        for v in versions {
            latest.entry(v.algorithm_id).or_insert(v.version);
        }
        Ok(rows
            .into_iter()
            .filter(|a| user.is_admin() || user.organizations.contains(&a.org))
            .map(|a| AlgorithmSummary {
                latest_version: latest.remove(&a.id),
                org: a.org,
                name: a.name,
                description: a.description,
            })
            .collect())
    }

    async fn algorithm(
        &self,
        user: &CurrentUser,
        org: &str,
        name: &str,
    ) -> Result<AlgorithmDetails, AppError> {
        let algorithm = self.visible_algorithm(user, org, name).await?;
        Ok(AlgorithmDetails {
            versions: self.versions_of(&algorithm.id).await?,
            org: algorithm.org,
            name: algorithm.name,
            description: algorithm.description,
        })
    }

    async fn add_version(
        &self,
        user: &CurrentUser,
        org: &str,
        name: &str,
        version: &str,
        runtime: &str,
    ) -> Result<(), AppError> {
        self.visible_algorithm(user, org, name).await?;
        self.add_algorithm_version(&format!("{org}/{name}"), version, runtime, "")
            .await?;
        let target = format!("{org}/{name} {}", version.trim());
        self.audit(&user.username, "version-added", &target, runtime.trim())
            .await;
        Ok(())
    }

    async fn events(
        &self,
        user: &CurrentUser,
        org: &str,
        name: &str,
    ) -> Result<Vec<GrantedTopic>, AppError> {
        let algorithm = self.visible_algorithm(user, org, name).await?;
        self.event_rows(&algorithm.id).await
    }

    async fn save_flow(&self, user: &CurrentUser, request: FlowRequest) -> Result<(), AppError> {
        let algorithm_id = self
            .visible_algorithm(user, &request.org, &request.name)
            .await?
            .id;
        let rows = self.event_rows(&algorithm_id).await?;
        let topic = TopicName::parse(&request.topic)?;
        let row = rows
            .iter()
            .find(|r| {
                r.connection_id == request.connection_id
                    && r.topic == topic.as_str()
                    && r.direction == request.direction
            })
            .ok_or(AppError::Forbidden)?;
        let versions = self.versions_of(&algorithm_id).await?;
        let Some(chosen) = versions
            .iter()
            .find(|v| v.version == request.version.trim())
        else {
            return Err(AppError::validation(
                "version",
                format!(
                    "{}/{} has no version '{}'.",
                    request.org,
                    request.name,
                    request.version.trim()
                ),
            ));
        };
        if request.direction == Direction::Publish && topic.subscription().is_some() {
            return Err(AppError::validation(
                "topic",
                format!(
                    "'{topic}' is a Service Bus topic subscription: outputs are published to its topic, not to a subscription."
                ),
            ));
        }
        let takes_batches = Runtime::parse(&chosen.runtime).is_ok_and(|r| r.takes_batches());
        let dlq = request
            .dlq_topic
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if let Some(dlq) = dlq {
            if request.direction == Direction::Publish {
                return Err(AppError::validation(
                    "dlq_topic",
                    "A Dead Letter Queue applies only to a subscribe flow.",
                ));
            }
            if dlq == topic.as_str() {
                return Err(AppError::validation(
                    "dlq_topic",
                    "The Dead Letter Queue cannot be the topic the flow reads.",
                ));
            }
            if !row.dlq_options.iter().any(|o| o == dlq) {
                return Err(AppError::validation(
                    "dlq_topic",
                    format!(
                        "'{dlq}' cannot be the Dead Letter Queue: it must be a topic (or queue) of the same broker connection that this algorithm may publish to."
                    ),
                ));
            }
            // A queue is asked about when it becomes the flow's Dead Letter
            // Queue, not at every save.
            let current = row.flow.as_ref().and_then(|f| f.dlq_topic.as_deref());
            if current != Some(dlq) {
                let id = request.connection_id.clone();
                let connection = self
                    .db
                    .interact(move |c| crate::db::brokers::find_connection(c, &id))
                    .await?
                    .ok_or_else(|| AppError::not_found("The broker connection"))?;
                if connection.kind() == BrokerKind::Sqs {
                    self.check_sqs_dead_letter_queue(&connection, dlq).await?;
                }
            }
        }
        // Asked when the flow is enabled, not at every save.
        if request.direction == Direction::Subscribe
            && row.connection_kind == BrokerKind::ServiceBus
            && !row.enabled()
        {
            self.check_without_sessions(&request.connection_id, topic.as_str())
                .await?;
        }
        let ordering = request.ordering;
        let concurrency = request
            .concurrency
            .unwrap_or_else(|| ordering.default_concurrency());
        if request.direction == Direction::Publish
            && (ordering != FlowOrdering::Partition || concurrency != 1)
        {
            return Err(AppError::validation(
                "ordering",
                "Ordering and concurrent runs apply only to a subscribe flow.",
            ));
        }
        ordering
            .check_concurrency(concurrency)
            .map_err(|message| AppError::validation("concurrency", message))?;
        let subscribe = request.direction == Direction::Subscribe;
        let default = Batching::default_for(takes_batches && subscribe);
        let batching = Batching {
            size: request.batch_size.unwrap_or(default.size),
            wait_ms: request.batch_wait_ms.unwrap_or(default.wait_ms),
        };
        if !subscribe && batching.size != 1 {
            return Err(AppError::validation(
                "batch_size",
                "Batches apply only to a subscribe flow.",
            ));
        }
        batching
            .check(takes_batches || !subscribe)
            .map_err(|(field, message)| AppError::validation(field, message))?;
        let (connection, version, dlq, direction) = (
            request.connection_id.clone(),
            request.version.trim().to_owned(),
            dlq.map(str::to_owned),
            request.direction,
        );
        let topic_name = topic.to_string();
        if request.follows_subscribe_flow && subscribe {
            return Err(AppError::validation(
                "version",
                "Only a publish flow can follow the listener's version.",
            ));
        }
        let follows = request.follows_subscribe_flow;
        if request.give_back && !(subscribe && row.connection_kind.is_queue()) {
            return Err(AppError::validation(
                "give_back",
                "Only a subscribe flow on a queue (Amazon SQS or Azure Service Bus) can give messages back to it.",
            ));
        }
        if request.give_back
            && row.connection_kind == BrokerKind::Sqs
            && topic.as_str().ends_with(".fifo")
        {
            return Err(AppError::validation(
                "give_back",
                format!(
                    "'{topic}' is a FIFO queue: a message given back would lose its place in its group, and the messages after it would run first. Leave it to retry in place."
                ),
            ));
        }
        let settings = queries::RunSettings {
            ordering,
            concurrency,
            batching,
            give_back: request.give_back,
        };
        // The grants are checked again where the flow is written: a grant
        // taken away since they were read above leaves nothing written. Two
        // saves of one new flow at once: the one that loses runs again, as
        // an update.
        let mut attempts = 0;
        let granted = loop {
            attempts += 1;
            let (algorithm_id, connection, topic_name, version, dlq) = (
                algorithm_id.clone(),
                connection.clone(),
                topic_name.clone(),
                version.clone(),
                dlq.clone(),
            );
            let saved = self
                .db
                .interact(move |c| {
                    c.transaction(|c| {
                        let publish = direction == Direction::Publish;
                        if !queries::is_granted(
                            c,
                            &algorithm_id,
                            &connection,
                            &topic_name,
                            publish,
                        )? {
                            return Ok(None);
                        }
                        // A Service Bus entity's own dead-letter subqueue
                        // comes with the entity.
                        if let Some(dlq) = &dlq
                            && *dlq != crate::servicebus::dead_letter_path(&topic_name)
                            && !queries::is_granted(c, &algorithm_id, &connection, dlq, true)?
                        {
                            return Ok(None);
                        }
                        let before = queries::current(
                            c,
                            &algorithm_id,
                            &connection,
                            &topic_name,
                            direction,
                        )?;
                        let id = queries::upsert_flow(
                            c,
                            &algorithm_id,
                            &connection,
                            &topic_name,
                            direction,
                            &version,
                            dlq.as_deref(),
                            settings,
                        )?;
                        queries::set_follows(c, &id, follows)?;
                        Ok(Some(before))
                    })
                })
                .await;
            match saved {
                Err(error) if error.lost_a_race() && attempts < 10 => {
                    tokio::time::sleep(std::time::Duration::from_millis(5 * attempts)).await;
                    continue;
                }
                saved => break saved?,
            }
        };
        let Some(before) = granted else {
            return Err(AppError::Forbidden);
        };
        let target = format!(
            "{}/{} {} {topic}",
            request.org,
            request.name,
            direction.as_str()
        );
        let version = request.version.trim();
        match before {
            Some((old, true)) => {
                let detail = if old == version {
                    format!("version {version}")
                } else {
                    format!("version {old} → {version}")
                };
                self.audit(&user.username, "flow-edited", &target, &detail)
                    .await;
            }
            _ => {
                self.audit(
                    &user.username,
                    "flow-enabled",
                    &target,
                    &format!("version {version}"),
                )
                .await;
            }
        }
        tracing::info!(user = %user.username, algorithm = %format!("{}/{}", request.org, request.name),
            topic = %topic, direction = direction.as_str(), version = %request.version,
            ordering = ordering.as_str(), concurrency, batch_size = batching.size,
            give_back = request.give_back, "flow saved");
        self.runner.reconcile().await
    }

    async fn disable_flow(
        &self,
        user: &CurrentUser,
        org: &str,
        name: &str,
        connection_id: &str,
        topic: &str,
        direction: Direction,
    ) -> Result<(), AppError> {
        let id = self.visible_algorithm(user, org, name).await?.id;
        let (c_id, t) = (connection_id.to_owned(), topic.to_owned());
        let found = self
            .db
            .interact(move |c| queries::disable_flow(c, &id, &c_id, &t, direction))
            .await?;
        if !found {
            return Err(AppError::not_found("An enabled flow on this topic"));
        }
        tracing::info!(user = %user.username, algorithm = %format!("{org}/{name}"), topic, "flow disabled");
        let target = format!("{org}/{name} {} {topic}", direction.as_str());
        self.audit(&user.username, "flow-disabled", &target, "")
            .await;
        self.runner.reconcile().await
    }

    async fn flow_stats(&self, user: &CurrentUser, flow_id: &str) -> Result<FlowStats, AppError> {
        self.check_flow(user, flow_id).await?;
        let mut stats = self.runner.flow_stats(flow_id).await;
        let id = flow_id.to_owned();
        stats.paused = self
            .db
            .interact(move |c| queries::is_paused(c, &id))
            .await?;
        if stats.paused {
            stats.state = "paused".into();
        }
        Ok(stats)
    }

    /// A page of the flow's dead letters, newest first.
    async fn dead_letters(
        &self,
        user: &CurrentUser,
        flow_id: &str,
        query: DeadLetterQuery,
    ) -> Result<DeadLetterPage, AppError> {
        self.check_flow(user, flow_id).await?;
        self.runner.dead_letters(flow_id, query).await
    }

    /// Replays dead letters of the flow; the replay's id.
    async fn replay_dead_letters(
        &self,
        user: &CurrentUser,
        request: ReplayRequest,
    ) -> Result<String, AppError> {
        self.check_flow(user, &request.flow_id).await?;
        self.runner
            .start_replay(
                &request.flow_id,
                request.version.as_deref(),
                &request.letters,
                request.matching,
                &user.username,
            )
            .await
    }

    /// Pauses (or resumes) a subscribe flow: it stops, committing what it
    /// did, and keeps its settings and offsets.
    async fn pause_flow(
        &self,
        user: &CurrentUser,
        flow_id: &str,
        paused: bool,
    ) -> Result<(), AppError> {
        self.check_flow(user, flow_id).await?;
        let id = flow_id.to_owned();
        let found = self
            .db
            .interact(move |c| queries::set_paused(c, &id, paused))
            .await?;
        if !found {
            return Err(AppError::not_found("An enabled flow"));
        }
        tracing::info!(user = %user.username, flow = flow_id, paused, "flow paused or resumed");
        self.runner.reconcile().await
    }

    /// Shows (or with `apply`, makes) a paused flow's new start position.
    async fn rewind_flow(
        &self,
        user: &CurrentUser,
        flow_id: &str,
        to: Rewind,
        apply: bool,
    ) -> Result<RewindPlan, AppError> {
        self.check_flow(user, flow_id).await?;
        let plan = self.runner.rewind(flow_id, to, apply).await?;
        if apply {
            tracing::info!(user = %user.username, flow = flow_id, messages = plan.messages, "flow rewound");
        }
        Ok(plan)
    }

    /// Tries a version on a sample of the flow's messages.
    async fn dry_run(
        &self,
        user: &CurrentUser,
        request: DryRunRequest,
    ) -> Result<DryRun, AppError> {
        self.check_flow(user, &request.flow_id).await?;
        self.runner.dry_run(request).await
    }
}
