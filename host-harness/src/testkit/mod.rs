//! What the demo and the tests stand on: the mock provider APIs ([`mock`]), the whole stack
//! on loopback ([`stack`]) and the one signing helper ([`signing`]).

pub mod defaults;
pub mod mock;
pub mod signing;
pub mod stack;
