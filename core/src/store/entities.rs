//! sea-orm entities, one module per table (see `migrations/`).

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub email: String,
        pub display_name: String,
        /// `admin` or `member`.
        pub role: String,
        pub password_hash: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod session {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        /// SHA-256 (hex) of the cookie value; the value itself is never stored.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id_hash: String,
        pub user_id: i64,
        pub csrf_token: String,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::user::Entity",
            from = "Column::UserId",
            to = "super::user::Column::Id"
        )]
        User,
    }

    impl Related<super::user::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::User.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod api_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_tokens")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub user_id: i64,
        pub name: String,
        /// SHA-256 (hex) of the token; the token is shown once and never stored.
        #[sea_orm(unique)]
        pub token_hash: String,
        /// The first characters of the token, so a user can tell tokens apart.
        pub prefix: String,
        pub created_at: DateTimeUtc,
        pub last_used_at: Option<DateTimeUtc>,
        pub revoked_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::user::Entity",
            from = "Column::UserId",
            to = "super::user::Column::Id"
        )]
        User,
    }

    impl Related<super::user::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::User.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod link {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "links")]
    pub struct Model {
        /// Internal, stable key (the public id changes on rotation).
        #[sea_orm(primary_key)]
        pub pk: i64,
        #[sea_orm(unique)]
        pub public_id: String,
        pub owner_id: i64,
        pub title: String,
        pub description: Option<String>,
        pub schedule_start: Option<DateTimeUtc>,
        pub schedule_end: Option<DateTimeUtc>,
        pub schedule_tz: Option<String>,
        pub schedule_rrule: Option<String>,
        pub guests_need_approval: bool,
        pub max_participants: i32,
        /// Whether signed-in members other than the owner wait in the lobby.
        pub members_need_approval: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub revoked_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod org_policy {
    use sea_orm::entity::prelude::*;

    /// A single row (id 1) holding the instance-wide restrictions.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "org_policy")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub guest_access: bool,
        pub member_link_creation: bool,
        /// JSON array of plugin names.
        pub disabled_plugins: String,
        pub updated_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod call_event {
    use sea_orm::entity::prelude::*;

    /// One line of the call-metadata log. Never holds call content.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "call_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The link's public id at the time of the event.
        pub link_id: String,
        pub kind: String,
        /// Who was invited or asked to join (a display name or an email address).
        pub subject: Option<String>,
        pub at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod plugin_kv {
    use sea_orm::entity::prelude::*;

    /// One entry of a plugin's key-value store.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "plugin_kv")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub plugin: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: Vec<u8>,
        /// Bytes of key and value, counted against the plugin's quota.
        pub size: i64,
        pub expires_at: Option<DateTimeUtc>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod plugin_status {
    use sea_orm::entity::prelude::*;

    /// A plugin the server switched off by itself (after repeated failures), and why.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "plugin_status")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub plugin: String,
        pub disabled_reason: String,
        pub disabled_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod mail_outbox {
    use sea_orm::entity::prelude::*;

    /// A message in the mail outbox, written before anything tries to send it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mail_outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        /// JSON array of the `To` addresses.
        pub recipients: String,
        /// JSON array of the `Cc` addresses.
        pub cc: String,
        pub reply_to: Option<String>,
        pub subject: String,
        pub body_text: String,
        pub body_html: Option<String>,
        /// The plugin that queued it; `None` for the server's own mail.
        pub plugin: Option<String>,
        /// `queued`, `sent` or `failed`.
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: DateTimeUtc,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
        /// The `Message-ID` header (without angle brackets), fixed when queued.
        pub message_id: Option<String>,
        /// The delivery attempt holding the message; `None` when none does.
        pub claim: Option<String>,
        /// When the SMTP server (or the file outbox) accepted it.
        pub sent_at: Option<DateTimeUtc>,
        /// The URL of RFC 8058 one-click unsubscribe (`List-Unsubscribe`), for
        /// mail a recipient may ask not to get again.
        pub list_unsubscribe: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod mail_outbox_attachment {
    use sea_orm::entity::prelude::*;

    /// An attachment of an outbox message (deleted with it).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mail_outbox_attachments")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub message_id: i64,
        /// Order within the message, from 0.
        pub position: i32,
        pub filename: String,
        pub content_type: String,
        pub data: Vec<u8>,
        /// Also offered as an alternative body (iMIP invitations).
        pub inline_alternative: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod cluster_node {
    use sea_orm::entity::prelude::*;

    /// A node of a cluster, as its last heartbeat left it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cluster_nodes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub node_id: String,
        /// Random per process: tells two processes with one node id apart.
        pub instance: String,
        /// The node's own base URL (`server.public_url` or its listen address).
        pub url: String,
        pub started_at: DateTimeUtc,
        pub heartbeat_at: DateTimeUtc,
        pub calls: i32,
        /// Participants on the calls the node hosts.
        pub participants: i32,
        pub draining: bool,
        /// The share of one core the node's process used over its last
        /// heartbeat, in thousandths.
        pub cpu_permille: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod call_seat {
    use sea_orm::entity::prelude::*;

    /// A participant's place on a call hosted by a node of a cluster, kept so that
    /// another node can seat them again if the host dies.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "call_seats")]
    pub struct Model {
        /// SHA-256 (hex) of the participant's resume token.
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub link_pk: i64,
        /// The node that saved it (the call's host then).
        pub node_id: String,
        /// A signed-in member's account; `None` for a guest.
        pub user_id: Option<i64>,
        /// A guest's key for the link (what their browser sent); `None` for a member.
        pub guest_key: Option<String>,
        pub name: String,
        pub is_owner: bool,
        pub joined_at: DateTimeUtc,
        pub saved_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod plugin_timer_run {
    use sea_orm::entity::prelude::*;

    /// When a plugin's timer last ran in a cluster, and on which node.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "plugin_timer_runs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub plugin: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub timer: String,
        pub last_run: DateTimeUtc,
        pub node_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
