//! The tonic glue for `juntos.chat.v1.Groups` (membership, group sends, notice keys): unpack the
//! request, take the caller from the gateway's headers, call the service.

use std::sync::Arc;

use juntos_proto::chat::v1::groups_server::Groups;
use juntos_proto::chat::v1::{
    CreateGroupRequest, GetGroupRequest, GetNoticeKeysRequest, GetNoticeKeysResponse,
    Group as WireGroup, GroupMember as WireMember, GroupResponse, GroupRole as WireRole,
    GroupSummary, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    MembersRequest, NoticeKey, RenameGroupRequest, SendGroupRequest, SendResponse,
    SetAdminsRequest,
};
use juntos_proto::meta::Caller;
use tonic::{Request, Response, Status};

use crate::service::ChatService;
use crate::service::groups::{Change, GroupView};
use crate::store::GroupRole;

/// `juntos.chat.v1.Groups`.
#[derive(Debug, Clone)]
pub struct GroupsGrpc {
    pub(super) service: Arc<ChatService>,
}

fn role(role: GroupRole) -> i32 {
    match role {
        GroupRole::Member => WireRole::Member.into(),
        GroupRole::Admin => WireRole::Admin.into(),
    }
}

fn group_response(view: GroupView) -> Response<GroupResponse> {
    let GroupView {
        group,
        mut devices,
        digest,
        role: my_role,
    } = view;
    let members = group
        .members
        .into_iter()
        .map(|m| WireMember {
            device_ids: devices.remove(&m.user_id).unwrap_or_default(),
            role: role(m.role),
            joined_ms: m.joined_ms,
            user_id: m.user_id,
        })
        .collect();
    Response::new(GroupResponse {
        group: Some(WireGroup {
            group_id: group.group_id,
            name: group.name,
            version: group.version,
            created_ms: group.created_ms,
            members,
            my_role: role(my_role),
            member_devices_digest: digest.to_vec(),
        }),
    })
}

impl GroupsGrpc {
    async fn change(
        &self,
        caller: &Caller,
        group_id: &str,
        change: Change,
    ) -> Result<Response<GroupResponse>, Status> {
        match self.service.change_group(caller, group_id, change).await? {
            Some(view) => Ok(group_response(view)),
            // Only leaving (or removing oneself) ends membership.
            None => Ok(Response::new(GroupResponse { group: None })),
        }
    }
}

#[tonic::async_trait]
impl Groups for GroupsGrpc {
    async fn create_group(
        &self,
        request: Request<CreateGroupRequest>,
    ) -> Result<Response<GroupResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        let view = self
            .service
            .create_group(&caller, &request.name, request.member_user_ids)
            .await?;
        Ok(group_response(view))
    }

    async fn add_members(
        &self,
        request: Request<MembersRequest>,
    ) -> Result<Response<GroupResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        self.change(&caller, &request.group_id, Change::Add(request.user_ids))
            .await
    }

    async fn remove_members(
        &self,
        request: Request<MembersRequest>,
    ) -> Result<Response<GroupResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        self.change(&caller, &request.group_id, Change::Remove(request.user_ids))
            .await
    }

    async fn leave_group(
        &self,
        request: Request<LeaveGroupRequest>,
    ) -> Result<Response<LeaveGroupResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let group_id = request.into_inner().group_id;
        self.service
            .change_group(&caller, &group_id, Change::Leave)
            .await?;
        Ok(Response::new(LeaveGroupResponse {}))
    }

    async fn set_admins(
        &self,
        request: Request<SetAdminsRequest>,
    ) -> Result<Response<GroupResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        let change = Change::SetAdmins {
            user_ids: request.user_ids,
            admin: request.admin,
        };
        self.change(&caller, &request.group_id, change).await
    }

    async fn rename_group(
        &self,
        request: Request<RenameGroupRequest>,
    ) -> Result<Response<GroupResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        self.change(&caller, &request.group_id, Change::Rename(request.name))
            .await
    }

    async fn list_groups(
        &self,
        request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        let (groups, more) = self
            .service
            .list_groups(&caller, &request.after_group_id, request.limit)
            .await?;
        Ok(Response::new(ListGroupsResponse {
            groups: groups
                .into_iter()
                .map(|g| GroupSummary {
                    group_id: g.group_id,
                    name: g.name,
                    version: g.version,
                    member_count: g.member_count,
                    my_role: role(g.role),
                })
                .collect(),
            more,
        }))
    }

    async fn get_group(
        &self,
        request: Request<GetGroupRequest>,
    ) -> Result<Response<GroupResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let group_id = request.into_inner().group_id;
        Ok(group_response(
            self.service.get_group(&caller, &group_id).await?,
        ))
    }

    async fn send_group(
        &self,
        request: Request<SendGroupRequest>,
    ) -> Result<Response<SendResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        let server_time_ms = self
            .service
            .send_group(
                &caller,
                &request.group_id,
                request.client_msg_id,
                request.ciphertext.into(),
                &request.member_devices_digest,
            )
            .await?;
        Ok(Response::new(SendResponse { server_time_ms }))
    }

    async fn get_notice_keys(
        &self,
        request: Request<GetNoticeKeysRequest>,
    ) -> Result<Response<GetNoticeKeysResponse>, Status> {
        Caller::from_metadata(request.metadata())?;
        Ok(Response::new(GetNoticeKeysResponse {
            keys: self
                .service
                .notice_keys()
                .into_iter()
                .map(|(key_id, public_key)| NoticeKey {
                    key_id,
                    public_key: public_key.to_vec(),
                })
                .collect(),
        }))
    }
}
