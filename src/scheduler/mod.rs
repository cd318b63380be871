//! The scheduler: when posts and recurring jobs fall due, and the publisher that puts posts in
//! the channel exactly once.

pub mod clock;
pub mod due;
pub mod jobs;
pub mod local_time;
pub mod publisher;
pub mod recurring;
