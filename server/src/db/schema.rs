// The tables, as diesel sees them. Both backends' migrations produce these.

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    organizations (id) {
        id -> Text,
        name -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    memberships (organization_id, user_id) {
        organization_id -> Text,
        user_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    algorithms (id) {
        id -> Text,
        organization_id -> Text,
        name -> Text,
        description -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    algorithm_versions (id) {
        id -> Text,
        algorithm_id -> Text,
        version -> Text,
        major -> BigInt,
        minor -> BigInt,
        patch -> BigInt,
        runtime -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    sessions (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        last_seen_at -> BigInt,
    }
}

diesel::joinable!(memberships -> organizations (organization_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(algorithms -> organizations (organization_id));
diesel::joinable!(algorithm_versions -> algorithms (algorithm_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(api_keys -> users (user_id));

diesel::table! {
    broker_connections (id) {
        id -> Text,
        name -> Text,
        bootstrap_servers -> Text,
        security_protocol -> Text,
        sasl_mechanism -> Nullable<Text>,
        username -> Nullable<Text>,
        password_encrypted -> Nullable<Text>,
        ca_pem_encrypted -> Nullable<Text>,
        created_at -> BigInt,
        kind -> Text,
        region -> Nullable<Text>,
        endpoint_url -> Nullable<Text>,
    }
}

diesel::table! {
    topic_grants (connection_id, topic, algorithm_id) {
        connection_id -> Text,
        topic -> Text,
        algorithm_id -> Text,
        can_subscribe -> Bool,
        can_publish -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    flows (id) {
        id -> Text,
        algorithm_id -> Text,
        connection_id -> Text,
        topic -> Text,
        direction -> Text,
        version -> Text,
        dlq_topic -> Nullable<Text>,
        enabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        consumer_group -> Nullable<Text>,
        failures_dropped -> BigInt,
        ordering -> Text,
        concurrency -> Integer,
        batch_size -> Integer,
        batch_wait_ms -> Integer,
    }
}

diesel::table! {
    flow_failures (id) {
        id -> Text,
        flow_id -> Text,
        at_ms -> BigInt,
        source_partition -> Integer,
        source_offset -> BigInt,
        version -> Text,
        kind -> Text,
        message -> Text,
        attempts -> Integer,
        record_key -> Nullable<Binary>,
        record_value -> Nullable<Binary>,
        value_bytes -> BigInt,
        headers -> Text,
    }
}

diesel::table! {
    publish_follows (flow_id) {
        flow_id -> Text,
    }
}

diesel::table! {
    flow_give_back (flow_id) {
        flow_id -> Text,
    }
}

diesel::table! {
    paused_flows (flow_id) {
        flow_id -> Text,
        at_ms -> BigInt,
    }
}

diesel::table! {
    replays (id) {
        id -> Text,
        flow_id -> Text,
        version -> Text,
        created_by -> Text,
        created_at_ms -> BigInt,
        state -> Text,
        message -> Nullable<Text>,
        finished_at_ms -> Nullable<BigInt>,
        owner -> Nullable<Text>,
        heartbeat_ms -> BigInt,
    }
}

diesel::table! {
    replay_letters (replay_id, seq) {
        replay_id -> Text,
        seq -> Integer,
        flow_id -> Text,
        letter -> Text,
        outcome -> Text,
        at_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        user_id -> Text,
        name -> Text,
        prefix -> Text,
        key_hash -> Text,
        created_at_ms -> BigInt,
        expires_at_ms -> Nullable<BigInt>,
        last_used_at_ms -> Nullable<BigInt>,
        revoked_at_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        at_ms -> BigInt,
        actor -> Text,
        kind -> Text,
        target -> Text,
        detail -> Text,
    }
}

diesel::table! {
    model_hosts (entry) {
        entry -> Text,
        added_by -> Text,
        added_at_ms -> BigInt,
    }
}

diesel::joinable!(topic_grants -> broker_connections (connection_id));
diesel::joinable!(topic_grants -> algorithms (algorithm_id));
diesel::joinable!(flows -> broker_connections (connection_id));
diesel::joinable!(flows -> algorithms (algorithm_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    organizations,
    memberships,
    algorithms,
    algorithm_versions,
    sessions,
    broker_connections,
    topic_grants,
    flows,
    flow_failures,
    replays,
    replay_letters,
    paused_flows,
    publish_follows,
    flow_give_back,
    model_hosts,
    api_keys,
    audit_events,
);
