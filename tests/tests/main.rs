//! The black-box tests of the services, through gRPC, in one test binary: one link instead
//! of one per file (each links every service crate). Each module is one area; its own doc
//! says what it covers. Run one area with
//! `cargo nextest run -p fanfare-tests -E 'test(/^fanout_live::/)'`.

mod abuse;
mod boundary_callers;
mod boundary_lists;
mod broadcast_audience;
mod fanout_follows;
mod fanout_input;
mod fanout_jobs;
mod fanout_live;
mod fanout_outage;
mod fanout_runtime;
mod groups_followers_only;
mod groups_input;
mod groups_invites;
mod groups_lifecycle;
mod groups_membership;
mod groups_moderation;
mod groups_outage;
mod groups_paging;
mod groups_runtime;
mod messages_access;
mod messages_commit;
mod messages_edits;
mod messages_history;
mod messages_input;
mod messages_input_send;
mod messages_log;
mod messages_outages;
mod messages_reactions;
mod messages_send;
mod messages_user_channel;
mod tls_everywhere;
