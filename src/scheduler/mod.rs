//! The scheduler: when posts and recurring jobs fall due. So far the wall-clock resolution of
//! publish times (`local_time`) and cron expressions (`recurring`), the groundwork of issue 5;
//! the durable jobs come with publishing.

pub mod local_time;
pub mod recurring;
