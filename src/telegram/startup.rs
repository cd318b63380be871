//! The checks `postflow run` makes before it takes updates: the token works, the bot administers
//! the channel with the rights it needs, and the command list matches the YAML.

use teloxide::ApiError;
use teloxide::RequestError;
use teloxide::prelude::*;
use teloxide::types::{BotCommand, ChatMemberKind, Recipient};

use super::outbound::call_with;

/// Start-up checks give Telegram three tries (under a second), then say what is wrong.
const ATTEMPTS: u32 = 3;
use crate::config::Bundle;

/// What start-up learned.
#[derive(Debug, Clone)]
pub struct Startup {
    pub bot_username: String,
    /// The channel's numeric id (the Throttle adaptor needs ids, not `@names`).
    pub channel_id: ChatId,
    /// The channel's public name, for links to its posts (`None` for a private channel).
    pub channel_username: Option<String>,
}

/// Checks the token and the bot's rights in the channel; the error is one line for the operator.
pub async fn check(bot: &Bot, api_url: &str, channel: &str) -> Result<Startup, String> {
    let me = check_token(bot, api_url).await?;
    check_channel(bot, &me, channel).await
}

/// Checks the token: the bot as Telegram knows it.
pub async fn check_token(bot: &Bot, api_url: &str) -> Result<teloxide::types::Me, String> {
    call_with(bot.get_me(), "getMe", ATTEMPTS, None).await.map_err(|error| match error {
        RequestError::Api(ApiError::InvalidToken) => {
            "Telegram refused BOT_TOKEN (401 Unauthorized): copy the token again from @BotFather".to_string()
        }
        other => format!("cannot reach the Bot API at {api_url}: {other}"),
    })
}

/// Checks that `me` administers `channel` with the rights to post, edit and delete.
pub async fn check_channel(bot: &Bot, me: &teloxide::types::Me, channel: &str) -> Result<Startup, String> {
    let recipient = match channel.parse::<i64>() {
        Ok(id) => Recipient::Id(ChatId(id)),
        Err(_) => Recipient::ChannelUsername(channel.to_string()),
    };
    let chat = call_with(bot.get_chat(recipient), "getChat", ATTEMPTS, None).await.map_err(|error| match error {
        RequestError::Api(ApiError::ChatNotFound) => format!(
            "CHANNEL_ID {channel}: Telegram does not know this channel or the bot is not in it; add the bot to the channel as an administrator"
        ),
        other => format!("CHANNEL_ID {channel}: cannot look the channel up: {other}"),
    })?;
    if !chat.is_channel() {
        return Err(format!("CHANNEL_ID {channel} is not a channel (it is a group or a private chat)"));
    }
    let member = call_with(bot.get_chat_member(chat.id, me.id), "getChatMember", ATTEMPTS, None)
        .await
        .map_err(|error| format!("CHANNEL_ID {channel}: cannot read the bot's rights in the channel: {error}"))?;
    let missing: Vec<&str> = match &member.kind {
        ChatMemberKind::Owner(_) => Vec::new(),
        ChatMemberKind::Administrator(admin) => [
            (admin.can_post_messages, "post messages"),
            (admin.can_edit_messages, "edit messages of others"),
            (admin.can_delete_messages, "delete messages of others"),
        ]
        .into_iter()
        .filter(|(granted, _)| !granted)
        .map(|(_, right)| right)
        .collect(),
        _ => {
            return Err(format!(
                "the bot is not an administrator of {channel}: add it under the channel's Administrators with the rights to post, edit and delete messages"
            ));
        }
    };
    if !missing.is_empty() {
        return Err(format!(
            "the bot administers {channel} but may not {}: grant these rights under the channel's Administrators",
            missing.join(", ")
        ));
    }
    let bot_username = me.username.clone().unwrap_or_default();
    let channel_username = chat.username().map(str::to_string);
    Ok(Startup { bot_username, channel_id: chat.id, channel_username })
}

/// Sets the bot's command list (the `/` menu) from the YAML.
pub async fn set_commands(bot: &Bot, bundle: &Bundle) -> Result<(), String> {
    let commands: Vec<BotCommand> = bundle
        .menu
        .commands
        .iter()
        .filter(|command| command.listed)
        .map(|command| BotCommand::new(command.name.clone(), command.description.clone()))
        .collect();
    call_with(bot.set_my_commands(commands), "setMyCommands", ATTEMPTS, None)
        .await
        .map_err(|error| format!("Telegram refused the command list from flows/menu.yaml: {error}"))?;
    Ok(())
}
