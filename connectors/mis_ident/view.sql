-- ClinicBridge reads IDENT receptions through this one view, under a read-only SQL login.
-- Create it once in the clinic's IDENT database (SQL Server). Table and column names follow the
-- public IDENT integrations cited in research/mis.md §1.6; confirm them on the clinic's database
-- before enabling (IDENT versions differ in a few column names).
CREATE VIEW dbo.cb_receptions AS
SELECT
    r.ID,
    r.DateTimeChanged,
    CONVERT(varchar(20), CONVERT(bigint, r.RowVersion)) AS RowVersion,
    r.PlanStart,
    r.PlanEnd,
    r.PatientAppeared,
    r.ReceptionStarted,
    r.ReceptionEnded,
    r.ReceptionCanceled,
    r.ID_ReceptionCancelReasons,
    cr.Name AS CancelReasonName,
    r.CheckIssued,
    r.ID_Patients,
    pp.Surname AS PatientSurname,
    pp.Name AS PatientName,
    pp.Patronymic AS PatientPatronymic,
    pp.MobilePhone AS PatientMobilePhone,
    pp.Phone AS PatientPhone,
    p.CardNumber,
    r.ID_Staffs,
    LTRIM(RTRIM(CONCAT(sp.Surname, ' ', sp.Name, ' ', sp.Patronymic))) AS StaffName,
    s.Speciality AS StaffSpecialty,
    r.ID_OwnCompanies,
    oc.Name AS BranchName,
    LTRIM(RTRIM(CONCAT(ip.Surname, ' ', ip.Name))) AS InsertedByName,
    r.FirstConsultation,
    r.ID_ReceptionsTransferFrom,
    r.Comment
FROM dbo.Receptions r
JOIN dbo.Patients p ON p.ID_Persons = r.ID_Patients
JOIN dbo.Persons pp ON pp.ID = p.ID_Persons
LEFT JOIN dbo.Staffs s ON s.ID_Persons = r.ID_Staffs
LEFT JOIN dbo.Persons sp ON sp.ID = s.ID_Persons
LEFT JOIN dbo.Staffs ins ON ins.ID_Persons = r.ID_StaffsInserted
LEFT JOIN dbo.Persons ip ON ip.ID = ins.ID_Persons
LEFT JOIN dbo.ReceptionCancelReasons cr ON cr.ID = r.ID_ReceptionCancelReasons
LEFT JOIN dbo.OwnCompanies oc ON oc.ID = r.ID_OwnCompanies;
