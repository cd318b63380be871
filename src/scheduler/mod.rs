//! The scheduler: when posts fall due. So far only the wall-clock resolution of publish times
//! (`local_time`), the groundwork of issue 5; the durable jobs come with publishing.

pub mod local_time;
