"""WeChat: one async client for every caller (login, push, pay helpers), never wechatpy's sync one."""
