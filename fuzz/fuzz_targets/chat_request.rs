#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iflow_actix_fuzz::chat_request(data));
